"""Imports every domain's tables so that ``Base.metadata`` knows them all."""

from strongroom.idempotency import IdempotencyKey
from strongroom.identity.models import (
    AuditEvent,
    AuthToken,
    LoginThrottle,
    PasswordReset,
    RecoveryCode,
    TotpFactor,
    User,
)
from strongroom.ledger.models import Account, Entry, Transfer
from strongroom.notify.models import OutboxEmail
from strongroom.reserves.models import PorAudit, PorReserve

__all__ = [
    "Account",
    "AuditEvent",
    "AuthToken",
    "Entry",
    "IdempotencyKey",
    "LoginThrottle",
    "OutboxEmail",
    "PasswordReset",
    "PorAudit",
    "PorReserve",
    "RecoveryCode",
    "TotpFactor",
    "Transfer",
    "User",
]
