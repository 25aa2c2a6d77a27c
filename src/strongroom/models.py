"""Imports every domain's tables so that ``Base.metadata`` knows them all."""

from strongroom.adjustments.models import Adjustment
from strongroom.banking.models import BankAccount
from strongroom.funding.models import Purchase, Topup, WebhookDelivery
from strongroom.fx.models import FxConversion, FxQuote, FxRate
from strongroom.gifts.models import Gift, GiftShare
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
from strongroom.ledger.models import Account, Entry, Lock, LockUse, Transfer
from strongroom.merchants.models import (
    Charge,
    DynamicQr,
    Merchant,
    MerchantKey,
    MerchantMember,
    Refund,
)
from strongroom.merchants.models import WebhookEvent as MerchantWebhookEvent
from strongroom.movements.models import IdempotencyKey
from strongroom.notify.models import OutboxEmail
from strongroom.paycodes.models import CodeUse, Device
from strongroom.ratelimit.models import RateLimitBucket
from strongroom.reserves.models import PorAudit, PorReserve
from strongroom.settlement.models import PayoutBatch, PayoutRow, Settlement
from strongroom.tokens.models import VirtualCard
from strongroom.withdrawals.models import Withdrawal, WithdrawalAddress, WithdrawalPreference

__all__ = [
    "Account",
    "Adjustment",
    "ApiKey",
    "AuditEvent",
    "AuthToken",
    "BankAccount",
    "Charge",
    "CodeUse",
    "Device",
    "DynamicQr",
    "EmailVerification",
    "Entry",
    "FxConversion",
    "FxQuote",
    "FxRate",
    "Gift",
    "GiftShare",
    "IdempotencyKey",
    "KycDocument",
    "KycMember",
    "KycOrganisation",
    "KycSubmission",
    "Lock",
    "LockUse",
    "LoginThrottle",
    "Merchant",
    "MerchantKey",
    "MerchantMember",
    "MerchantWebhookEvent",
    "OutboxEmail",
    "PasswordReset",
    "PayoutBatch",
    "PayoutRow",
    "PendingSignIn",
    "PorAudit",
    "PorReserve",
    "Purchase",
    "RateLimitBucket",
    "RecoveryCode",
    "Refund",
    "Settlement",
    "StepUpFailures",
    "Topup",
    "TotpFactor",
    "Transfer",
    "User",
    "VirtualCard",
    "WebhookDelivery",
    "Withdrawal",
    "WithdrawalAddress",
    "WithdrawalPreference",
]
