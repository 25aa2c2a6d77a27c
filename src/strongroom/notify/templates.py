"""The email template registry (R-MAIL-2): every email has a stable template id.

A template is two files in ``notify/templates/``: ``<id>.txt.j2`` (the plain-text body) and
``<id>.html.j2`` (an HTML fragment), plus a one-line subject and a sample context here. The
renderer (``render.py``) wraps both bodies and puts the anti-phishing banner on top, so no template
can leave it out. Tests render every registered template with its sample, so a new template is
covered as soon as it is registered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from strongroom.errors import invariant, present

TEMPLATE_ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_SAMPLE_TIME = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EmailTemplate:
    id: str
    subject: str
    sample: Mapping[str, object] = field(default_factory=dict)
    sensitive: bool = False  # the body holds a secret: scrubbed from the outbox once sent

    @property
    def text_file(self) -> str:
        return f"{self.id}.txt.j2"

    @property
    def html_file(self) -> str:
        return f"{self.id}.html.j2"


_REGISTRY: dict[str, EmailTemplate] = {}


def register(template: EmailTemplate) -> EmailTemplate:
    invariant(
        TEMPLATE_ID.fullmatch(template.id) is not None,
        f"template id {template.id!r} must look like 'domain.event'",
    )
    invariant(template.id not in _REGISTRY, f"template {template.id} is registered twice")
    invariant("\n" not in template.subject, "a subject is one line")
    _REGISTRY[template.id] = template
    return template


def get(template_id: str) -> EmailTemplate:
    return present(_REGISTRY.get(template_id), f"no email template {template_id!r}")


def all_templates() -> list[EmailTemplate]:
    return sorted(_REGISTRY.values(), key=lambda template: template.id)


WELCOME = register(
    EmailTemplate(
        id="account.welcome",
        subject="Welcome to Strongroom, {{ name }}",
        sample={"name": "Alice Chan"},
    )
)
LOGIN_ALERT = register(
    EmailTemplate(
        id="security.login_alert",
        subject="New sign-in to your Strongroom account",
        sample={
            "name": "Alice Chan",
            "at": _SAMPLE_TIME,
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (iPhone)",
        },
    )
)
ACCOUNT_LOCKED = register(
    EmailTemplate(
        id="security.account_locked",
        subject="Sign-in to your Strongroom account is locked",
        sample={
            "name": "Alice Chan",
            "failures": 5,
            "locked_until": _SAMPLE_TIME,
            "ip": "203.0.113.7",
        },
    )
)
PASSWORD_RESET = register(
    EmailTemplate(
        id="security.password_reset",
        subject="Reset your Strongroom password",
        sample={
            "name": "Alice Chan",
            "token": "sample-token",
            "expires_at": _SAMPLE_TIME,
            "reset_url": "https://wallet.example/app/reset-password#token=sample-token",
            "ip": "203.0.113.7",
            "two_factor": True,
        },
        sensitive=True,
    )
)
SETTINGS_CHANGED = register(
    EmailTemplate(
        id="security.settings_changed",
        subject="Security change on your Strongroom account: {{ change }}",
        sample={
            "name": "Alice Chan",
            "change": "password",
            "at": _SAMPLE_TIME,
            "ip": "203.0.113.7",
            "frozen_until": _SAMPLE_TIME,
        },
    )
)
TWO_FACTOR_ALERT = register(
    EmailTemplate(
        id="security.two_factor_alert",
        subject="Security alert: wrong two-factor codes on your Strongroom account",
        sample={
            "name": "Alice Chan",
            "failures": 5,
            "at": _SAMPLE_TIME,
            "ip": "203.0.113.7",
            "blocked_until": _SAMPLE_TIME,
        },
    )
)
VERIFY_EMAIL = register(
    EmailTemplate(
        id="account.verify_email",
        # no name: nothing a stranger typed goes to an address nobody has confirmed
        subject="Confirm your email address for Strongroom",
        sample={
            "token": "sample-token",
            "verify_url": "https://wallet.example/app/verify-email#token=sample-token",
            "expires_at": _SAMPLE_TIME,
        },
        sensitive=True,
    )
)
SIGN_UP_ATTEMPTED = register(
    EmailTemplate(
        id="account.sign_up_attempted",
        subject="Someone tried to open an account with your email address",
        sample={"name": "Alice Chan", "at": _SAMPLE_TIME, "ip": "203.0.113.7"},
    )
)
STEP_UP_SIGNED_OUT = register(
    EmailTemplate(
        id="security.step_up_signed_out",
        subject="Security alert: a session of your Strongroom account was signed out",
        sample={"name": "Alice Chan", "failures": 5, "at": _SAMPLE_TIME, "ip": "203.0.113.7"},
    )
)
KYC_APPROVED = register(
    EmailTemplate(
        id="kyc.approved",
        subject="Your identity verification is approved",
        sample={"name": "Alice Chan", "level": "primary", "tier": "primary", "reason": None},
    )
)
KYC_REJECTED = register(
    EmailTemplate(
        id="kyc.rejected",
        subject="Your identity verification needs another look",
        sample={
            "name": "Alice Chan",
            "level": "advanced",
            "tier": "primary",
            "reason": "The photo of the back of the ID card is blurred.",
        },
    )
)
P2P_SENT = register(
    EmailTemplate(
        id="payments.p2p_sent",
        subject="Receipt: you sent {{ amount }}",
        sample={
            "name": "Alice Chan",
            "amount": "HKD 12.50",
            "counterparty": "B** W**",
            "reference": "+85251234567",
            "transfer_id": "9f3c1a52-5b7e-4d0e-9a43-1c2b3d4e5f60",
            "note": "lunch",
            "at": _SAMPLE_TIME,
        },
    )
)
P2P_RECEIVED = register(
    EmailTemplate(
        id="payments.p2p_received",
        subject="Receipt: you received {{ amount }}",
        sample={
            "name": "Bob Wong",
            "amount": "HKD 12.50",
            "counterparty": "A** C**",
            "transfer_id": "9f3c1a52-5b7e-4d0e-9a43-1c2b3d4e5f60",
            "note": "lunch",
            "at": _SAMPLE_TIME,
        },
    )
)
DATA_EXPORTED = register(
    EmailTemplate(
        id="privacy.data_exported",
        subject="A copy of your Strongroom data was downloaded",
        sample={"name": "Alice Chan", "at": _SAMPLE_TIME, "ip": "203.0.113.7", "documents": 2},
    )
)
WITHDRAWAL_COMPLETED = register(
    EmailTemplate(
        id="withdrawals.completed",
        subject="Your withdrawal of {{ amount }} was paid",
        sample={
            "name": "Alice Chan",
            "amount": "HKD 250.00",
            "destination": "****6789",
            "withdrawal_id": "wd_0123456789abcdef0123",
            "at": _SAMPLE_TIME,
        },
    )
)
WITHDRAWAL_FAILED = register(
    EmailTemplate(
        id="withdrawals.failed",
        subject="Your withdrawal of {{ amount }} failed: the money is back in your wallet",
        sample={
            "name": "Alice Chan",
            "amount": "HKD 250.00",
            "destination": "****6787",
            "withdrawal_id": "wd_0123456789abcdef0123",
            "at": _SAMPLE_TIME,
        },
    )
)
MERCHANT_PAYMENT_RECEIPT = register(
    EmailTemplate(
        id="merchants.payment_receipt",
        subject="Receipt: you paid {{ amount }} to {{ merchant }}",
        sample={
            "name": "Alice Chan",
            "amount": "HKD 100.00",
            "merchant": "Lucky Tea House",
            "charged": None,
            "charge_id": "ch_3f9c1a525b7e4d0e9a431c2b3d4e5",
            "at": _SAMPLE_TIME,
        },
    )
)
MERCHANT_REFUND_RECEIPT = register(
    EmailTemplate(
        id="merchants.refund_receipt",
        subject="Refund: {{ merchant }} returned {{ amount }}",
        sample={
            "name": "Alice Chan",
            "amount": "HKD 40.00",
            "merchant": "Lucky Tea House",
            "charge_id": "ch_3f9c1a525b7e4d0e9a431c2b3d4e5",
            "refund_id": "rf_8a1c2b3d4e5f60718293a4b5c6d7e",
            "at": _SAMPLE_TIME,
        },
    )
)
TOPUP_COMPLETED = register(
    EmailTemplate(
        id="funding.topup_completed",
        subject="Your top-up of {{ amount }} arrived",
        sample={
            "name": "Alice Chan",
            "amount": "HKD 100.00",
            "channel": "fps",
            "topup_id": "tu_0123456789abcdef0123",
            "at": _SAMPLE_TIME,
        },
    )
)
PURCHASE_COMPLETED = register(
    EmailTemplate(
        id="funding.purchase_completed",
        subject="You bought {{ amount }} for {{ paid }}",
        sample={
            "name": "Alice Chan",
            "amount": "BTC 0.00193798",
            "paid": "HKD 1000.00",
            "purchase_id": "pu_0123456789abcdef0123",
            "unlocks_at": _SAMPLE_TIME,
            "at": _SAMPLE_TIME,
        },
    )
)
PURCHASE_FAILED = register(
    EmailTemplate(
        id="funding.purchase_failed",
        subject="Your purchase of {{ amount }} did not go through",
        sample={
            "name": "Alice Chan",
            "amount": "BTC 0.00193798",
            "paid": "HKD 1000.00",
            "credited": "HKD 1000.00",
            "purchase_id": "pu_0123456789abcdef0123",
            "at": _SAMPLE_TIME,
        },
    )
)
