"""Password reset (R-SEC-4): only through a single-use emailed token, valid 30 minutes, and the
2FA code when 2FA is on. Nothing else (name, ID number, phone) can reset a password."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import DomainError, present
from strongroom.identity import audit, lockout, passwords, service, two_factor
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import PasswordReset, User
from strongroom.notify import outbox, render
from strongroom.settings import AuthSettings

TOKEN_MAX_CHARS = 200


class InvalidResetToken(DomainError):
    code = "invalid_reset_token"
    status = 400


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


RESET_PATH = "/app/reset-password"
"""The Lite page the emailed link opens (the token in its fragment)."""
TEMPLATE_ID = "security.password_reset"


def link(public_url: str, token: str) -> str:
    """The emailed link: the reset page, with the token in the URL's fragment, which browsers
    never send to a server: it stays out of access logs and Referer headers."""
    return f"{public_url.rstrip('/')}{RESET_PATH}#token={token}"


def request_reset(
    *,
    session: Session,
    email: str,
    settings: AuthSettings,
    public_url: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """Email a reset token if an account has this email; the caller answers 202 either way.

    Both cases do the same work, so the answer's time does not tell (issue #10, finding 6):
    count the email's requests of the last hour, make and hash a token, render the email,
    write a reset row (for an unknown email one that can never be used) and an audit event;
    only the outbox row differs, as only an account is mailed. At most
    ``reset_emails_per_hour_max`` per email string an hour, so no one can flood an inbox."""
    now = now or utcnow()
    key = lockout.email_key(email)
    user = service.find_user(session=session, reference=key) if "@" in key else None
    recent = session.scalar(
        select(func.count())
        .select_from(PasswordReset)
        .where(PasswordReset.email == key, PasswordReset.created_at > now - timedelta(hours=1))
    )
    subject = user.id if user is not None else None
    if (recent or 0) >= settings.reset_emails_per_hour_max:
        _audit(session, "password.reset_throttled", subject, key, origin, now)
        return
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=settings.reset_token_ttl_s)
    session.add(
        PasswordReset(
            id="r_" + secrets.token_hex(8),
            user_id=subject,
            email=key,
            token_hash=_digest(token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()  # written now in both cases: the same statements in the same order
    context = {
        "token": token,
        "expires_at": expires_at,
        "reset_url": link(public_url, token),
        "ip": origin.ip,
        "two_factor": user is not None and two_factor.is_enabled(user),
    }
    if user is not None:
        outbox.send_to_user(
            session=session, user=user, template_id=TEMPLATE_ID, now=now, context=context
        )
    else:  # the rendering an account's email costs, for nobody
        render.render(TEMPLATE_ID, {"name": "", **context}, anti_phishing_code=None)
    _audit(session, "password.reset_requested", subject, key, origin, now)


def _audit(
    session: Session,
    action: str,
    subject: str | None,
    email: str,
    origin: Origin,
    now: datetime,
) -> None:
    audit.record(
        session=session,
        action=action,
        subject_user_id=subject,
        origin=origin,
        now=now,
        details={} if subject is not None else {"email": email},
    )
    session.flush()


def confirm_reset(
    *,
    session: Session,
    token: str,
    new_password: str,
    otp: str | None,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> User:
    """Set a new password with a valid token (and the 2FA code when on). Every session is
    signed out, the email's sign-in lock lifted, withdrawals frozen for 24 h. A wrong 2FA code
    counts towards the block even though the reset is refused (``two_factor.verify`` keeps it);
    a refused reset changes nothing else and leaves the token usable."""
    now = now or utcnow()
    row = _usable(session, token, now)
    user = present(session.get(User, row.user_id), "a usable reset token belongs to a user")
    passwords.check_policy(new_password, settings)
    if two_factor.is_enabled(user):
        two_factor.verify(
            session=session, user=user, code=otp, settings=settings, now=now, origin=origin
        )
    user.password_hash = passwords.hash_password(new_password)
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    service.revoke_other_sessions(
        session=session, user=user, keep_session_id=None, origin=origin, now=now
    )
    lockout.unlock(session=session, email=user.email)
    service.record_security_change(
        session=session,
        user=user,
        action="password.reset",
        change="password (reset by email)",
        settings=settings,
        origin=origin,
        now=now,
    )
    return user


def _usable(session: Session, token: str, now: datetime) -> PasswordReset:
    refused = InvalidResetToken(
        "this reset token is not valid: it may be used or expired; ask for a new one"
    )
    if not token or len(token) > TOKEN_MAX_CHARS:
        raise refused
    row = session.scalars(
        select(PasswordReset).where(PasswordReset.token_hash == _digest(token)).with_for_update()
    ).first()
    if row is None or row.user_id is None or row.used_at is not None or row.expires_at <= now:
        raise refused
    return row
