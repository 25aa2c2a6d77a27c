"""Users, operators, their bearer tokens, and the account-security tables of SPEC §4."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index(
            "ix_users_erased_to_purge",
            "erased_at",
            postgresql_where=text("erased_at IS NOT NULL AND purged_at IS NULL"),
            sqlite_where=text("erased_at IS NOT NULL AND purged_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(2))
    kyc_tier: Mapped[str] = mapped_column(String(16), default="unverified")
    # ISO 3166-1 alpha-2, set by KYC approval; T+N risk rules read it (R-TN-1)
    nationality: Mapped[str | None] = mapped_column(String(2), nullable=True)
    operator_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # R-APC-1: shown in every email, so it is stored as entered (letters and digits only)
    anti_phishing_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    # R-SEC-3: set while TOTP is on (the factor itself is in ``identity_totp``)
    two_factor_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # R-SEC-5: withdrawals are refused until then
    withdrawals_frozen_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # R-SEC-11: when the current email was verified by its link; no money moves before that
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # R-P2P-1: E.164 (identity.phones), unique; unverified (no SMS step)
    phone: Mapped[str | None] = mapped_column(String(16), nullable=True, unique=True)
    # R-FUND-2: the legal name of the user's approved KYC document (KYC approval sets it);
    # read only through banking.service.verified_legal_name
    legal_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # issue #11 item 7: the account was closed and its personal fields replaced by a pseudonym
    # (``privacy.service.erase``); ``purged_at``: its financial records' remaining personal
    # references were deleted after the retention period (``privacy.service.purge``)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuthToken(Base):
    """A bearer token, i.e. a session. Only its SHA-256 is stored (R-SEC-6)."""

    __tablename__ = "auth_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)


class LoginThrottle(Base):
    """Wrong passwords per email string (R-SEC-2), whether or not an account has that email."""

    __tablename__ = "identity_login_throttle"

    email: Mapped[str] = mapped_column(String(254), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locks: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TotpFactor(Base):
    """A user's TOTP secret (R-SEC-3): pending until confirmed with a code. The secret is
    sealed with the vault key (R-SEC-11, ``identity.two_factor.secret_of``), with the id of the
    key that sealed it."""

    __tablename__ = "identity_totp"

    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), primary_key=True)
    secret_sealed: Mapped[str] = mapped_column(String(255))
    secret_key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_step: Mapped[int] = mapped_column(BigId, default=-1)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RecoveryCode(Base):
    """A single-use recovery code; only its SHA-256 is stored."""

    __tablename__ = "identity_recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PasswordReset(Base):
    """A single-use emailed reset token (R-SEC-4); only its SHA-256 is stored. A request for
    an email without an account writes a row too (``user_id`` None, never usable): both answers
    do the same work, and the hourly limit counts per email string."""

    __tablename__ = "identity_password_resets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id"), index=True, nullable=True
    )
    email: Mapped[str] = mapped_column(String(254), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EmailVerification(Base):
    """A single-use emailed token that verifies one address of a user (R-SEC-11); only its
    SHA-256 is stored. It verifies the address it was sent to, not a later one."""

    __tablename__ = "identity_email_verifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StepUpFailures(Base):
    """Wrong passwords in a row at a step-up (R-SEC-8) by one session: counted here, not in
    the sign-in lockout, so a stolen token cannot lock the owner out of signing in; at
    ``auth.step_up_failures_max`` the session is signed out."""

    __tablename__ = "identity_step_up_failures"

    session_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("auth_tokens.id"), primary_key=True
    )
    failures: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """Append-only (R-SEC-7): the database refuses UPDATE and DELETE on this table."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject", "subject_user_id", "id"),
        Index("ix_audit_events_actor", "actor_id", "id"),
        Index("ix_audit_events_action", "action", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    category: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(80))
    actor_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    subject_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    details_json: Mapped[str] = mapped_column(Text, default="{}")


class PendingSignIn(Base):
    """A right password waiting for its 2FA code in the web's two-step sign-in (issue #10):
    single use and short-lived (``auth.sign_in_pending_ttl_s``). The browser holds only the
    nonce; its SHA-256 is stored here, with the user, never the password
    (``identity.pending_sign_in``)."""

    __tablename__ = "identity_pending_sign_ins"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # the console's sign-in (operators only) and the Lite app's do not complete each other's
    operators_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
