from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class RegisterIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    name: str = Field(max_length=200)
    region: str = "HK"


class RegisterOut(BaseModel):
    user_id: str


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    otp: str | None = Field(default=None, max_length=32)


class LoginOut(BaseModel):
    token: str
    expires_at: datetime


class MeOut(BaseModel):
    user_id: str
    email: str
    name: str
    region: str
    kyc_tier: str
    two_factor: bool
    anti_phishing_code_set: bool
    operator_role: str | None = None
    withdrawals_frozen_until: datetime | None = None
    email_verified: bool = False
    phone: str | None = None


PasswordField = Field(default=None, max_length=1024, description="R-SEC-8 step-up: the password")
OtpField = Field(
    default=None, max_length=32, description="the 2FA code (or a recovery code) when 2FA is on"
)


class StepUpIn(BaseModel):
    """R-SEC-8: the password again, and the 2FA code when 2FA is on."""

    password: str | None = PasswordField
    otp: str | None = OtpField


class AntiPhishingCodeIn(StepUpIn):
    code: str = Field(max_length=64)


class AntiPhishingPreviewIn(BaseModel):
    """A code to preview (nothing more needed), or none: the saved code, after a step-up."""

    code: str | None = Field(default=None, max_length=64)
    password: str | None = PasswordField
    otp: str | None = OtpField


class AntiPhishingPreviewOut(BaseModel):
    code_set: bool
    text: str | None
    html: str | None


class PasswordResetIn(BaseModel):
    email: str = Field(max_length=254)


class PasswordResetConfirmIn(BaseModel):
    token: str = Field(max_length=200)
    new_password: str = Field(max_length=1024)
    otp: str | None = Field(default=None, max_length=32)


class PasswordChangeIn(BaseModel):
    current_password: str | None = PasswordField
    new_password: str = Field(max_length=1024)
    otp: str | None = Field(default=None, max_length=32)


class EmailChangeIn(StepUpIn):
    email: str = Field(max_length=254)


class TwoFactorEnrolOut(BaseModel):
    secret: str
    otpauth_uri: str


class OtpIn(BaseModel):
    otp: str = Field(max_length=32)


class TwoFactorConfirmIn(BaseModel):
    """The first code of the new authenticator, and the step-up's password (2FA is off)."""

    otp: str = Field(max_length=32)
    password: str | None = PasswordField


class TwoFactorDisableIn(BaseModel):
    """The step-up: the password and a current code or a recovery code."""

    otp: str | None = OtpField
    password: str | None = PasswordField


class VerifyEmailIn(BaseModel):
    token: str = Field(max_length=200)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class SessionsOut(BaseModel):
    items: list[SessionOut]


class RevokedOut(BaseModel):
    revoked: int


class SecurityEventOut(BaseModel):
    id: int
    action: str
    occurred_at: datetime
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]


class SecurityEventsOut(BaseModel):
    items: list[SecurityEventOut]
    next_cursor: str | None


class AuditEventOut(BaseModel):
    id: int
    occurred_at: datetime
    category: str
    action: str
    actor_id: str | None
    actor_role: str | None
    subject_user_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]


class AuditEventsOut(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None
