"""Refusals of the identity domain (SPEC P4 codes; HTTP status by ``status`` in app.py)."""

from __future__ import annotations

from datetime import datetime

from strongroom.errors import DomainError, Forbidden, Unauthorized, ValidationFailed


class AccountLocked(DomainError):
    """Too many wrong passwords for this email (R-SEC-2). Unknown emails get it too."""

    code = "account_locked"
    status = 429

    def __init__(self, locked_until: datetime) -> None:
        super().__init__(
            f"too many wrong passwords: sign-in is locked until {locked_until.isoformat()}",
            locked_until=locked_until.isoformat(),
        )


class TwoFactorBlocked(DomainError):
    """Too many wrong two-factor codes in a row (R-SEC-3)."""

    code = "two_factor_blocked"
    status = 429

    def __init__(self, blocked_until: datetime) -> None:
        super().__init__(
            f"too many wrong two-factor codes: try again after {blocked_until.isoformat()}",
            blocked_until=blocked_until.isoformat(),
        )


class OtpRequired(Unauthorized):
    code = "otp_required"

    def __init__(self) -> None:
        super().__init__(
            "two-factor authentication is on: send the code from your "
            "authenticator app (or a recovery code) as otp"
        )


class InvalidOtp(Unauthorized):
    code = "invalid_otp"


class TwoFactorRequired(Forbidden):
    code = "two_factor_required"


class InvalidAntiPhishingCode(ValidationFailed):
    code = "invalid_anti_phishing_code"


class WeakPassword(ValidationFailed):
    code = "weak_password"
