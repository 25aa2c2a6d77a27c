"""Imports every domain's tables so that ``Base.metadata`` knows them all."""

from strongroom.adjustments.models import Adjustment
from strongroom.identity.api_keys import ApiKey
from strongroom.identity.models import (
    AuditEvent,
    AuthToken,
    EmailVerification,
    LoginThrottle,
    PasswordReset,
    PendingSignIn,
    RecoveryCode,
    StepUpFailures,
    TotpFactor,
    User,
)
from strongroom.kyc.models import Document as KycDocument
from strongroom.kyc.models import Member as KycMember
from strongroom.kyc.models import Organisation as KycOrganisation
from strongroom.kyc.models import Submission as KycSubmission
from strongroom.ledger.models import Account, Entry, Lock, Transfer
from strongroom.movements.models import IdempotencyKey
from strongroom.notify.models import OutboxEmail
from strongroom.ratelimit.models import RateLimitBucket
from strongroom.reserves.models import PorAudit, PorReserve

__all__ = [
    "Account",
    "Adjustment",
    "ApiKey",
    "AuditEvent",
    "AuthToken",
    "EmailVerification",
    "Entry",
    "IdempotencyKey",
    "KycDocument",
    "KycMember",
    "KycOrganisation",
    "KycSubmission",
    "Lock",
    "LoginThrottle",
    "OutboxEmail",
    "PasswordReset",
    "PendingSignIn",
    "PorAudit",
    "PorReserve",
    "RateLimitBucket",
    "RecoveryCode",
    "StepUpFailures",
    "TotpFactor",
    "Transfer",
    "User",
]
