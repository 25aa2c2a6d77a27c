"""Imports every domain's tables so that ``Base.metadata`` knows them all."""

from strongroom.adjustments.models import Adjustment
from strongroom.identity.api_keys import ApiKey
from strongroom.identity.models import (
    AuditEvent,
    AuthToken,
    LoginThrottle,
    PasswordReset,
    RecoveryCode,
    TotpFactor,
    User,
)
from strongroom.ledger.models import Account, Entry, Lock, Transfer
from strongroom.movements.models import IdempotencyKey
from strongroom.notify.models import OutboxEmail
from strongroom.reserves.models import PorAudit, PorReserve

__all__ = [
    "Account",
    "Adjustment",
    "ApiKey",
    "AuditEvent",
    "AuthToken",
    "Entry",
    "IdempotencyKey",
    "Lock",
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
