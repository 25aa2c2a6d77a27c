"""Registration, sign-in and bearer tokens (R-SEC-1, R-SEC-6; more of §4 comes later)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import Conflict, DomainError, Forbidden, Unauthorized, ValidationFailed
from strongroom.identity.models import AuthToken, User
from strongroom.settings import AuthSettings

REGIONS = ("HK", "CN")
OPERATOR_ROLES = ("admin", "kyc_reviewer", "finance", "support")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("strongroom-timing-equaliser")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime
    session_id: str


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise ValidationFailed("email address is not valid", code="invalid_email")
    return email


def check_password(password: str, settings: AuthSettings) -> None:
    if len(password) < settings.password_min_chars:
        raise ValidationFailed(
            f"password must be at least {settings.password_min_chars} characters",
            code="weak_password")
    if len(password) > settings.password_max_chars:
        raise ValidationFailed("password is too long", code="weak_password")


def register(*, session: Session, email: str, password: str, name: str, region: str,
             settings: AuthSettings, operator_role: str | None = None) -> User:
    email = normalise_email(email)
    check_password(password, settings)
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed("name must be 1 to 200 characters", code="invalid_name")
    if region not in REGIONS:
        raise ValidationFailed(f"region must be one of {', '.join(REGIONS)}",
                               code="invalid_region")
    if operator_role is not None and operator_role not in OPERATOR_ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(OPERATOR_ROLES)}",
                               code="invalid_role")
    if session.scalars(select(User.id).where(User.email == email)).first() is not None:
        raise Conflict("an account with this email exists", code="email_taken")
    user = User(id="u_" + secrets.token_hex(8), email=email, password_hash=_hasher.hash(password),
                name=name, region=region, kyc_tier="unverified", operator_role=operator_role,
                created_at=utcnow())
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:
        raise Conflict("an account with this email exists", code="email_taken") from error
    return user


def login(*, session: Session, email: str, password: str, settings: AuthSettings,
          ip: str | None = None, user_agent: str | None = None) -> IssuedToken:
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        _verify(_DUMMY_HASH, password)  # same work whether or not the email exists
        raise Unauthorized("email or password is wrong", code="invalid_credentials")
    if not _verify(user.password_hash, password):
        raise Unauthorized("email or password is wrong", code="invalid_credentials")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return issue_token(session=session, user=user, ttl_s=settings.token_ttl_s, ip=ip,
                       user_agent=user_agent)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def issue_token(*, session: Session, user: User, ttl_s: int, ip: str | None = None,
                user_agent: str | None = None) -> IssuedToken:
    token = "sr_" + secrets.token_urlsafe(32)
    now = utcnow()
    row = AuthToken(id="s_" + secrets.token_hex(8), user_id=user.id, token_hash=_digest(token),
                    created_at=now, expires_at=now + timedelta(seconds=ttl_s),
                    ip=(ip or "")[:64] or None, user_agent=(user_agent or "")[:300] or None)
    session.add(row)
    session.flush()
    return IssuedToken(token=token, expires_at=row.expires_at, session_id=row.id)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(*, session: Session, token: str | None, now: datetime | None = None) -> User:
    """The user behind a bearer token; ``unauthorized`` if missing, unknown, revoked, expired."""
    if not token:
        raise Unauthorized("sign in first: send Authorization: Bearer <token>")
    now = now or utcnow()
    row = session.execute(
        select(AuthToken, User).join(User, User.id == AuthToken.user_id)
        .where(AuthToken.token_hash == _digest(token))
    ).first()
    if row is None:
        raise Unauthorized("token is not valid", code="invalid_token")
    auth, user = row
    if auth.revoked_at is not None:
        raise Unauthorized("token was revoked", code="invalid_token")
    if auth.expires_at <= now:
        raise Unauthorized("token has expired", code="token_expired")
    return user


def require_operator(user: User, *roles: str) -> None:
    if user.operator_role is None or (roles and user.operator_role not in roles):
        raise Forbidden("this needs an operator role", code="forbidden",
                        roles=list(roles) or list(OPERATOR_ROLES))


def find_user(*, session: Session, reference: str) -> User | None:
    """A user by id (``u_...``) or email."""
    reference = reference.strip()
    if reference.startswith("u_"):
        return session.get(User, reference)
    try:
        email = normalise_email(reference)
    except DomainError:
        return None
    return session.scalars(select(User).where(User.email == email)).first()
