"""Email verification (R-SEC-11): an address is verified by an emailed link before the account
can move money.

Registering (``service.sign_up``) and changing the email (``service.change_email``) email a
single-use token for that address (only its SHA-256 is stored, valid ``auth.verify_token_ttl_s``)
in a link to the Lite app's page ``/app/verify-email#token=...``: the token is in the URL's
fragment, which browsers never send to a server, so it stays out of access logs and Referer
headers; the page posts it (``POST /v1/auth/verify-email`` does the same for API clients). A
token verifies the address it was sent to and no other. Until then ``require_verified`` refuses
top-ups and transfers with ``email_unverified`` (403). The welcome email goes out on the first
verification, so the platform sends nothing but this link, and no text a stranger typed (the
name), to an address nobody has confirmed.

``send_link`` is also what the demo and the tests use to verify their users: they take the
token it issues and verify with it, as the emailed link does (there is no other way to verify).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import Conflict, DomainError, Forbidden, present
from strongroom.identity import audit
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import AuditEvent, EmailVerification, User
from strongroom.notify import outbox
from strongroom.settings import AuthSettings

TOKEN_MAX_CHARS: Final = 200
VERIFY_PATH: Final = "/app/verify-email"
"""The Lite page the emailed link opens (the token in its fragment)."""
VERIFIED: Final = "email.verified"


class EmailUnverified(Forbidden):
    code = "email_unverified"

    def __init__(self) -> None:
        super().__init__(
            "verify your email address first: open the link we emailed you "
            "(POST /v1/me/verify-email/resend sends a new one)"
        )


class InvalidVerificationToken(DomainError):
    code = "invalid_verification_token"
    status = 400


class TooManyVerificationEmails(DomainError):
    code = "rate_limited"
    status = 429


def is_verified(user: User) -> bool:
    return user.email_verified_at is not None


def require_verified(user: User) -> None:
    """Money moves only from an account whose email is verified (R-SEC-11)."""
    if not is_verified(user):
        raise EmailUnverified()


def link(public_url: str, token: str) -> str:
    """The emailed link: the page, with the token in the fragment (never sent to a server)."""
    return f"{public_url.rstrip('/')}{VERIFY_PATH}#token={token}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def send_link(
    *,
    session: Session,
    user: User,
    settings: AuthSettings,
    public_url: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> str:
    """Issue a token for the user's current address and email its link; the token (the demo
    and the tests verify with it, as the link does)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=settings.verify_token_ttl_s)
    session.add(
        EmailVerification(
            id="v_" + secrets.token_hex(8),
            user_id=user.id,
            email=user.email,
            token_hash=_digest(token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    outbox.send_to_user(
        session=session,
        user=user,
        template_id="account.verify_email",
        context={"verify_url": link(public_url, token), "token": token, "expires_at": expires_at},
        now=now,
    )
    audit.record(
        session=session,
        action="email.verification_sent",
        subject_user_id=user.id,
        origin=origin,
        now=now,
    )
    session.flush()
    return token


def resend(
    *,
    session: Session,
    user: User,
    settings: AuthSettings,
    public_url: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """A new link for a user who lost theirs: at most ``auth.verify_emails_per_hour_max`` an
    hour (``rate_limited``), so the platform cannot be made to flood an inbox. Part D's
    request limiter (R-SEC-9) throttles the route per address and account on top of this."""
    now = now or utcnow()
    if is_verified(user):
        raise Conflict("your email address is verified already", code="email_already_verified")
    recent = session.scalar(
        select(func.count())
        .select_from(EmailVerification)
        .where(
            EmailVerification.user_id == user.id,
            EmailVerification.created_at > now - timedelta(hours=1),
        )
    )
    if (recent or 0) >= settings.verify_emails_per_hour_max:
        raise TooManyVerificationEmails(
            "we sent you several links in the last hour: use the newest one, or try later",
            retry_after_s=3600,
        )
    send_link(
        session=session, user=user, settings=settings, public_url=public_url, origin=origin, now=now
    )


def verify(
    *, session: Session, token: str, origin: Origin = NOWHERE, now: datetime | None = None
) -> User:
    """Verify the address a token was sent to; the user. The same link opened again answers
    the same (the address stays verified); an unknown, expired or outdated token (the email
    changed since) is ``invalid_verification_token``."""
    now = now or utcnow()
    refused = InvalidVerificationToken(
        "this verification link is not valid: it may be expired or for an older address; "
        "ask for a new one"
    )
    if not token or len(token) > TOKEN_MAX_CHARS:
        raise refused
    row = session.scalars(
        select(EmailVerification)
        .where(EmailVerification.token_hash == _digest(token))
        .with_for_update()
    ).first()
    user = present(session.get(User, row.user_id), "a token has a user") if row else None
    if row is None or user is None or row.email != user.email:
        raise refused
    if row.used_at is not None and is_verified(user):
        return user
    if row.used_at is not None or row.expires_at <= now:
        raise refused
    _mark_verified(session, user, now, origin)
    return user


def _mark_verified(session: Session, user: User, now: datetime, origin: Origin) -> None:
    session.execute(
        update(EmailVerification)
        .where(EmailVerification.user_id == user.id, EmailVerification.used_at.is_(None))
        .values(used_at=now)
    )
    first = _never_verified(session, user.id)
    user.email_verified_at = now
    audit.record(
        session=session,
        action=VERIFIED,
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"email": user.email},
    )
    if first:  # the welcome, once the address is known to be the user's
        outbox.send_to_user(session=session, user=user, template_id="account.welcome", now=now)
    session.flush()


def _never_verified(session: Session, user_id: str) -> bool:
    return (
        session.scalars(
            select(AuditEvent.id)
            .where(AuditEvent.subject_user_id == user_id, AuditEvent.action == VERIFIED)
            .limit(1)
        ).first()
        is None
    )


def unverify(*, session: Session, user: User) -> None:
    """The address changed: it must be verified again before money moves."""
    user.email_verified_at = None
    session.execute(
        update(EmailVerification)
        .where(EmailVerification.user_id == user.id, EmailVerification.used_at.is_(None))
        .values(used_at=utcnow())
    )
