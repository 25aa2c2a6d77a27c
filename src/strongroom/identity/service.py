"""Accounts, sign-in, sessions, operators and security settings (SPEC §4, R-SEC-1..7, R-APC-1).

Services take the session and never commit. Where a refusal must still leave a trace (a wrong
password, a wrong 2FA code, the lock, the emails and audit events they cause), the check runs as
a kept step (``db.keep``): the unit of work commits what the step wrote even when the request is
refused, and rolls back everything else. A kept step decides under the row lock it takes, and
the unit of work runs it again on a refusal, so it reads ids and values, never objects of the
refused transaction. What a passed check changes (failures forgotten, a code used) is written
by the caller in the unit of work, not by the kept step.

Every security change takes a ``StepUp`` proof (R-SEC-8, ``step_up``: the password again, and
the 2FA code when 2FA is on, in a session of the user; wrong passwords count toward that
session's limit, not the sign-in lockout). Public registration is ``sign_up``, whose answer is
the same whether or not the email has an account; ``register`` opens an account for trusted
callers (the CLI, the demo) and refuses a taken email. An email is verified by its emailed link
(``verification``) before money moves; the welcome email follows the first verification.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strongroom.db import keep, utcnow
from strongroom.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
    present,
)
from strongroom.identity import (
    antiphishing,
    audit,
    lockout,
    passwords,
    pending_sign_in,
    phones,
    roles,
    two_factor,
    verification,
)
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.errors import TwoFactorRequired
from strongroom.identity.models import AuditEvent, AuthToken, LoginThrottle, User
from strongroom.identity.step_up import (
    ReauthenticationRequired,
    StepUp,
    forget_failures,
    password_check,
)
from strongroom.notify import outbox
from strongroom.settings import AuthSettings

REGIONS = ("HK", "CN")
OPERATOR_ROLES = roles.ROLES  # the one role table: identity/roles.py
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")


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
    """R-SEC-1: ``weak_password`` if too short, too long or on the common-password list."""
    passwords.check_policy(password, settings)


# --------------------------------------------------------------------------- accounts


def register(
    *,
    session: Session,
    email: str,
    password: str,
    name: str,
    region: str,
    settings: AuthSettings,
    operator_role: str | None = None,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> User:
    """Open an account (the CLI, the demo, ``sign_up``); ``email_taken`` if the email has one.
    The email is not verified yet (``verification.send_link``); the welcome email follows the
    first verification."""
    now = now or utcnow()
    email, name = _checked_account(email, password, name, region, settings)
    if operator_role is not None and operator_role not in OPERATOR_ROLES:
        raise ValidationFailed(
            f"role must be one of {', '.join(OPERATOR_ROLES)}", code="invalid_role"
        )
    if session.scalars(select(User.id).where(User.email == email)).first() is not None:
        raise Conflict("an account with this email exists", code="email_taken")
    user = User(
        id="u_" + secrets.token_hex(8),
        email=email,
        password_hash=passwords.hash_password(password),
        name=name,
        region=region,
        kyc_tier="unverified",
        operator_role=operator_role,
        created_at=now,
    )
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:
        raise Conflict("an account with this email exists", code="email_taken") from error
    audit.record(
        session=session,
        action="account.registered",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"operator_role": operator_role},
    )
    return user


def _checked_account(
    email: str, password: str, name: str, region: str, settings: AuthSettings
) -> tuple[str, str]:
    """R-SEC-1's checks of a new account: the normalised email and the name."""
    email = normalise_email(email)
    check_password(password, settings)
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed("name must be 1 to 200 characters", code="invalid_name")
    if region not in REGIONS:
        raise ValidationFailed(f"region must be one of {', '.join(REGIONS)}", code="invalid_region")
    return email, name


@dataclass(frozen=True, slots=True)
class SignedUp:
    """What a sign-up answers: the same shape whether or not the email had an account."""

    user_id: str


def sign_up(
    *,
    session: Session,
    email: str,
    password: str,
    name: str,
    region: str,
    settings: AuthSettings,
    public_url: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> SignedUp:
    """Public registration (``POST /v1/auth/register``, the Lite app's sign-up): the answer
    never tells whether the email has an account (issue #10, finding 6). A new address gets
    an account and the verification link; an address that has an account gets nothing new:
    its owner is told someone tried (at most ``auth.verify_emails_per_hour_max`` such emails an
    hour), and the answer carries a fresh id no account will ever have. Both hash the password
    (Argon2id), so both take as long."""
    now = now or utcnow()
    address, _ = _checked_account(email, password, name, region, settings)
    owner = session.scalars(select(User).where(User.email == address)).first()
    if owner is None:
        try:
            with session.begin_nested():
                user = register(
                    session=session,
                    email=address,
                    password=password,
                    name=name,
                    region=region,
                    settings=settings,
                    origin=origin,
                    now=now,
                )
        except Conflict:  # registered by a parallel request meanwhile
            owner = present(
                session.scalars(select(User).where(User.email == address)).first(),
                "email_taken means an account has the email",
            )
        else:
            verification.send_link(
                session=session,
                user=user,
                settings=settings,
                public_url=public_url,
                origin=origin,
                now=now,
            )
            return SignedUp(user_id=user.id)
    passwords.hash_password(password)  # the same work as a new account: the same time
    _tell_owner_of_sign_up(session, owner, settings, origin, now)
    return SignedUp(user_id="u_" + secrets.token_hex(8))


def _tell_owner_of_sign_up(
    session: Session, owner: User, settings: AuthSettings, origin: Origin, now: datetime
) -> None:
    recent = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.subject_user_id == owner.id,
            AuditEvent.action == "account.sign_up_attempted",
            AuditEvent.occurred_at > now - timedelta(hours=1),
        )
    )
    audit.record(
        session=session,
        action="account.sign_up_attempted",
        subject_user_id=owner.id,
        origin=origin,
        now=now,
    )
    if (recent or 0) < settings.verify_emails_per_hour_max:
        outbox.send_to_user(
            session=session,
            user=owner,
            template_id="account.sign_up_attempted",
            context={"at": now, "ip": origin.ip},
            now=now,
        )
    session.flush()


def find_user(*, session: Session, reference: str, region: str | None = None) -> User | None:
    """A user by id (``u_...``), email or phone number (any common format; one without a
    country code is read in ``region``, the sender's: R-P2P-1). An erased account
    (``privacy.service.erase``) is found by no reference: nobody sends it money."""
    found = _find_user(session, reference, region)
    return None if found is None or found.erased_at is not None else found


def _find_user(session: Session, reference: str, region: str | None) -> User | None:
    reference = reference.strip()
    if reference.startswith("u_"):
        return session.get(User, reference)
    if phones.looks_like_phone(reference):
        e164 = phones.parse(reference, region=region)
        if e164 is None:
            return None
        return session.scalars(select(User).where(User.phone == e164)).first()
    try:
        email = normalise_email(reference)
    except DomainError:
        return None
    return session.scalars(select(User).where(User.email == email)).first()


# --------------------------------------------------------------------------- sign-in


def login(
    *,
    session: Session,
    email: str,
    password: str,
    settings: AuthSettings,
    otp: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
    operators_only: bool = False,
) -> IssuedToken:
    """Password, then the 2FA code when it is on (R-SEC-2/3); emails a sign-in notice.

    ``operators_only`` (the operator console): a user without an operator role is refused
    exactly as a wrong password is (counted, locked, audited the same), so the answer never
    tells who is an operator; an operator without 2FA is refused with ``two_factor_required``
    once the password is right, before any session is issued."""
    now = now or utcnow()
    origin = Origin(ip=ip, user_agent=user_agent)
    user = _password_verified(session, email, password, settings, origin, now, operators_only)
    if two_factor.is_enabled(user):
        two_factor.verify(
            session=session, user=user, code=otp, settings=settings, now=now, origin=origin
        )
    return _signed_in(session, user, settings, origin, now)


@dataclass(frozen=True, slots=True)
class CodeAwaited:
    """The password was right and 2FA is on: the sign-in waits for the code under ``nonce``
    (single use, until ``expires_at``: ``identity.pending_sign_in``)."""

    nonce: str
    expires_at: datetime


def login_password_step(
    *,
    session: Session,
    email: str,
    password: str,
    settings: AuthSettings,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
    operators_only: bool = False,
) -> IssuedToken | CodeAwaited:
    """The first of two steps (the web's sign-in forms): the password, counted, locked and
    audited as ``login``'s. Without 2FA, the session; with it, a pending sign-in that
    ``login_code_step`` completes, so that the password is held nowhere in between."""
    now = now or utcnow()
    origin = Origin(ip=ip, user_agent=user_agent)
    user = _password_verified(session, email, password, settings, origin, now, operators_only)
    if not two_factor.is_enabled(user):
        return _signed_in(session, user, settings, origin, now)
    opened = pending_sign_in.open_sign_in(
        session=session,
        user_id=user.id,
        operators_only=operators_only,
        ttl_s=settings.sign_in_pending_ttl_s,
        now=now,
    )
    return CodeAwaited(nonce=opened.nonce, expires_at=opened.expires_at)


def login_code_step(
    *,
    session: Session,
    nonce: str,
    otp: str,
    settings: AuthSettings,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
    operators_only: bool = False,
) -> IssuedToken:
    """The second step: the 2FA code for the pending sign-in ``nonce``, used up with the
    session it gives (``sign_in_expired`` when it is unknown, used, expired or of the other
    sign-in, or its user turned 2FA off since). A wrong code leaves it for another try (2FA's
    blocks and alerts apply); a lock the email got meanwhile still refuses."""
    now = now or utcnow()
    origin = Origin(ip=ip, user_agent=user_agent)
    user_id = pending_sign_in.consume(
        session=session, nonce=nonce, operators_only=operators_only, now=now
    )
    user = session.get_one(User, user_id)
    if not two_factor.is_enabled(user) or (operators_only and user.operator_role is None):
        raise pending_sign_in.SignInExpired()
    throttle = session.get(LoginThrottle, lockout.email_key(user.email))
    if throttle is not None:
        lockout.refuse_if_locked(throttle, now)
    two_factor.verify(
        session=session, user=user, code=otp, settings=settings, now=now, origin=origin
    )
    return _signed_in(session, user, settings, origin, now)


def _password_verified(
    session: Session,
    email: str,
    password: str,
    settings: AuthSettings,
    origin: Origin,
    now: datetime,
    operators_only: bool,
) -> User:
    """The sign-in's password step (a kept step, ``_password_check``); an operator without
    2FA is refused here. A hash of older parameters is renewed."""
    check = _password_check(email, password, settings, origin, now, operators_only=operators_only)
    user = session.get_one(User, keep(session, check))
    if operators_only and not two_factor.is_enabled(user):
        raise TwoFactorRequired(
            "operators must turn on two-factor authentication before signing in here"
        )
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def _signed_in(
    session: Session, user: User, settings: AuthSettings, origin: Origin, now: datetime
) -> IssuedToken:
    """Every factor passed: forget the email's failures, issue the session, audit it and
    email the sign-in notice."""
    lockout.unlock(session=session, email=user.email)
    issued = issue_token(
        session=session,
        user=user,
        ttl_s=settings.token_ttl_s,
        ip=origin.ip,
        user_agent=origin.user_agent,
        now=now,
    )
    audit.record(
        session=session,
        action="login.succeeded",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"session_id": issued.session_id},
    )
    outbox.send_to_user(
        session=session,
        user=user,
        template_id="security.login_alert",
        context={"at": now, "ip": origin.ip, "user_agent": origin.user_agent},
        now=now,
    )
    return issued


def _password_check(
    email: str,
    password: str,
    settings: AuthSettings,
    origin: Origin,
    now: datetime,
    *,
    operators_only: bool = False,
) -> Callable[[Session], str]:
    """The kept step of a sign-in (R-SEC-2): lock the email's throttle
    row, refuse while it is locked, check the password and count a wrong one; the user's id
    when it is right. Run again as a whole when the unit of work is refused, so each run decides
    under the lock and parallel guesses cannot get past the limit (a run's refusal is the one
    reported). Argon2 runs once per stored hash, not once per run."""
    matches = passwords.verifier(password)

    def check(kept: Session) -> str:
        throttle = lockout.acquire(session=kept, email=email, now=now, settings=settings)
        lockout.refuse_if_locked(throttle, now)
        user = kept.scalars(select(User).where(User.email == throttle.email)).first()
        right = matches(user.password_hash if user else passwords.DUMMY_HASH)
        if user is None or not right or (operators_only and user.operator_role is None):
            _wrong_password(kept, throttle, user, settings, origin, now)
        return user.id

    return check


def _wrong_password(
    session: Session,
    throttle: LoginThrottle,
    user: User | None,
    settings: AuthSettings,
    origin: Origin,
    now: datetime,
) -> NoReturn:
    """Count it, lock and email on the 5th; the same answer whether or not ``user`` exists."""
    locked_until = lockout.record_failure(throttle, now=now, settings=settings)
    subject = user.id if user else None
    audit.record(
        session=session,
        action="login.failed",
        subject_user_id=subject,
        origin=origin,
        now=now,
        details={"email": throttle.email},
    )
    if locked_until is not None:
        audit.record(
            session=session,
            action="login.locked",
            subject_user_id=subject,
            origin=origin,
            now=now,
            details={"email": throttle.email, "locked_until": locked_until},
        )
        if user is not None:
            outbox.send_to_user(
                session=session,
                user=user,
                template_id="security.account_locked",
                now=now,
                context={
                    "failures": settings.lockout_threshold,
                    "locked_until": locked_until,
                    "ip": origin.ip,
                },
            )
        session.flush()
        lockout.refuse_if_locked(throttle, now)
    session.flush()
    raise Unauthorized("email or password is wrong", code="invalid_credentials")


def issue_token(
    *,
    session: Session,
    user: User,
    ttl_s: int,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    token = "sr_" + secrets.token_urlsafe(32)
    now = now or utcnow()
    row = AuthToken(
        id="s_" + secrets.token_hex(8),
        user_id=user.id,
        token_hash=_digest(token),
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        ip=(ip or "")[:64] or None,
        user_agent=(user_agent or "")[:300] or None,
    )
    session.add(row)
    session.flush()
    return IssuedToken(token=token, expires_at=row.expires_at, session_id=row.id)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_digest(token: str) -> str:
    """What a bearer token is stored as (``AuthToken.token_hash``): for a reader that checks
    many tokens in one statement (the transfers' fast lane, ``movements.lane``)."""
    return _digest(token)


def authenticate_session(
    *, session: Session, token: str | None, now: datetime | None = None
) -> tuple[User, AuthToken]:
    """The user and session behind a bearer token; ``unauthorized`` if missing, unknown,
    revoked or expired."""
    if not token:
        raise Unauthorized("sign in first: send Authorization: Bearer <token>")
    now = now or utcnow()
    row = session.execute(
        select(AuthToken, User)
        .join(User, User.id == AuthToken.user_id)
        .where(AuthToken.token_hash == _digest(token))
    ).first()
    if row is None:
        raise Unauthorized("token is not valid", code="invalid_token")
    auth, user = row
    if auth.revoked_at is not None:
        raise Unauthorized("token was revoked", code="invalid_token")
    if auth.expires_at <= now:
        raise Unauthorized("token has expired", code="token_expired")
    return user, auth


def authenticate(*, session: Session, token: str | None, now: datetime | None = None) -> User:
    return authenticate_session(session=session, token=token, now=now)[0]


# --------------------------------------------------------------------------- sessions


def active_sessions(
    *, session: Session, user: User, settings: AuthSettings, now: datetime | None = None
) -> list[AuthToken]:
    """The user's signed-in sessions, newest first (R-SEC-6)."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(AuthToken)
            .where(
                AuthToken.user_id == user.id,
                AuthToken.revoked_at.is_(None),
                AuthToken.expires_at > now,
            )
            .order_by(AuthToken.created_at.desc(), AuthToken.id)
            .limit(settings.sessions_max)
        )
    )


def revoke_session(
    *,
    session: Session,
    user: User,
    session_id: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """Sign one of the user's own sessions out; another user's id is ``not_found``."""
    now = now or utcnow()
    row = session.get(AuthToken, session_id)
    if row is None or row.user_id != user.id or row.revoked_at is not None or row.expires_at <= now:
        raise NotFound("no such session", code="session_not_found")
    row.revoked_at = now
    audit.record(
        session=session,
        action="session.revoked",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"session_id": session_id},
    )
    session.flush()


def revoke_other_sessions(
    *,
    session: Session,
    user: User,
    keep_session_id: str | None,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> int:
    """Sign out every session of the user but ``keep_session_id`` (None: all of them)."""
    now = now or utcnow()
    query = update(AuthToken).where(AuthToken.user_id == user.id, AuthToken.revoked_at.is_(None))
    if keep_session_id is not None:
        query = query.where(AuthToken.id != keep_session_id)
    revoked = int(getattr(session.execute(query.values(revoked_at=now)), "rowcount", 0) or 0)
    audit.record(
        session=session,
        action="session.revoked_others",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"revoked": revoked, "kept": keep_session_id},
    )
    session.flush()
    return revoked


# --------------------------------------------------------------------------- operators


def require_operator(user: User, *roles: str) -> None:
    """An operator with 2FA on and one of ``roles`` (any operator role when none is given)."""
    if user.operator_role is None:
        raise Forbidden(
            "this needs an operator role",
            code="forbidden",
            roles=list(roles) or list(OPERATOR_ROLES),
        )
    if not two_factor.is_enabled(user):
        raise TwoFactorRequired(
            "operators must turn on two-factor authentication first: "
            "POST /v1/me/2fa, then POST /v1/me/2fa/confirm"
        )
    if roles and user.operator_role not in roles:
        raise Forbidden("your operator role may not do this", code="forbidden", roles=list(roles))


def record_operator_action(
    *,
    session: Session,
    operator: User,
    method: str,
    route: str,
    path: str,
    query: str = "",
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> None:
    """Who, what, when, from where: one audit event per operator API call (R-SEC-7)."""
    audit.record(
        session=session,
        category=audit.OPERATOR,
        action="operator.api",
        actor=operator,
        origin=Origin(ip=ip, user_agent=user_agent),
        now=now,
        details={"method": method, "route": route[:200], "path": path[:300], "query": query[:500]},
    )
    session.flush()


# --------------------------------------------------------------------------- phone number


def set_phone(
    *,
    session: Session,
    user: User,
    phone: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> str:
    """Set the user's phone number (R-P2P-1: others can then pay it), normalised to E.164 in
    the user's region; one account per number (409 ``phone_taken``). Not a security setting
    (no sign-in or recovery uses it), so no step-up and no freeze; audited. The E.164 form."""
    e164 = phones.normalise(phone, region=user.region)
    if user.phone == e164:
        return e164
    taken = session.scalars(select(User.id).where(User.phone == e164, User.id != user.id)).first()
    if taken is not None:
        raise Conflict("another account has this phone number", code="phone_taken")
    user.phone = e164
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:
        raise Conflict("another account has this phone number", code="phone_taken") from error
    audit.record(
        session=session,
        action="phone.set",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"phone_ends_with": e164[-4:]},
    )
    return e164


def remove_phone(
    *, session: Session, user: User, origin: Origin = NOWHERE, now: datetime | None = None
) -> None:
    """Forget the user's phone number: nobody can pay it any more."""
    if user.phone is None:
        return
    user.phone = None
    audit.record(
        session=session, action="phone.removed", subject_user_id=user.id, origin=origin, now=now
    )
    session.flush()


# --------------------------------------------------------------------------- R-SEC-5


def withdrawals_frozen_until(
    *, session: Session, user_id: str, now: datetime | None = None
) -> datetime | None:
    """When the withdrawal freeze after a security change ends; None when there is none now."""
    until = session.scalars(select(User.withdrawals_frozen_until).where(User.id == user_id)).first()
    return until if until is not None and until > (now or utcnow()) else None


def record_security_change(
    *,
    session: Session,
    user: User,
    action: str,
    change: str,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
    also_notify: str | None = None,
) -> datetime:
    """A security setting changed: audit it, freeze withdrawals for 24 h, email the user (and
    ``also_notify``, e.g. the old address after an email change). Returns the freeze's end."""
    now = now or utcnow()
    until = now + timedelta(seconds=settings.security_freeze_s)
    if user.withdrawals_frozen_until is None or user.withdrawals_frozen_until < until:
        user.withdrawals_frozen_until = until
    audit.record(
        session=session,
        action=action,
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"withdrawals_frozen_until": user.withdrawals_frozen_until},
    )
    context = {
        "change": change,
        "at": now,
        "ip": origin.ip,
        "frozen_until": user.withdrawals_frozen_until,
    }
    for address in dict.fromkeys([user.email, *([also_notify] if also_notify else [])]):
        outbox.send_to_user(
            session=session,
            user=user,
            template_id="security.settings_changed",
            context=context,
            to_address=address,
            now=now,
        )
    session.flush()
    return user.withdrawals_frozen_until


# --------------------------------------------------------------------------- R-SEC-8 step-up


def step_up(
    *,
    session: Session,
    user: User,
    session_id: str,
    password: str | None,
    otp: str | None,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> StepUp:
    """The password again, and the 2FA code when 2FA is on (R-SEC-8): the proof every
    sensitive change takes (``identity.step_up``). A missing password is
    ``reauthentication_required`` (403); a wrong one counts toward this session's step-up
    limit (a kept record: it signs the session out at the limit), never the sign-in lockout;
    a wrong code counts toward the 2FA block as at sign-in. For the withdrawal destinations
    too (``POST /v1/bank-accounts``)."""
    now = now or utcnow()
    if not password:
        raise ReauthenticationRequired()
    keep(session, password_check(user.id, session_id, password, settings, origin, now))
    if two_factor.is_enabled(user):
        two_factor.verify(
            session=session, user=user, code=otp, settings=settings, now=now, origin=origin
        )
    forget_failures(session=session, session_id=session_id)
    return StepUp(user_id=user.id, session_id=session_id, at=now)


# --------------------------------------------------------------------------- settings


def set_anti_phishing_code(
    *,
    session: Session,
    user: User,
    code: str,
    proof: StepUp,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    proof.require(user)
    antiphishing.validate(code, password_hash=user.password_hash)
    if user.anti_phishing_code == code:
        return
    user.anti_phishing_code = code
    record_security_change(
        session=session,
        user=user,
        action="anti_phishing_code.set",
        change="anti-phishing code",
        settings=settings,
        origin=origin,
        now=now,
    )


def remove_anti_phishing_code(
    *,
    session: Session,
    user: User,
    proof: StepUp,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    proof.require(user)
    if user.anti_phishing_code is None:
        return
    user.anti_phishing_code = None
    record_security_change(
        session=session,
        user=user,
        action="anti_phishing_code.removed",
        change="anti-phishing code removed",
        settings=settings,
        origin=origin,
        now=now,
    )


def change_password(
    *,
    session: Session,
    user: User,
    new_password: str,
    proof: StepUp,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """Change the password (the current one was the step-up); every other session is signed
    out."""
    now = now or utcnow()
    proof.require(user)
    check_password(new_password, settings)
    user.password_hash = passwords.hash_password(new_password)
    revoke_other_sessions(
        session=session, user=user, keep_session_id=proof.session_id, origin=origin, now=now
    )
    record_security_change(
        session=session,
        user=user,
        action="password.changed",
        change="password",
        settings=settings,
        origin=origin,
        now=now,
    )


def change_email(
    *,
    session: Session,
    user: User,
    new_email: str,
    proof: StepUp,
    settings: AuthSettings,
    public_url: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """Change the sign-in email; the old address is told too. The new address must be
    verified (its link is emailed) before money moves again."""
    now = now or utcnow()
    proof.require(user)
    new_email = normalise_email(new_email)
    if new_email == user.email:
        return
    if session.scalars(select(User.id).where(User.email == new_email)).first() is not None:
        raise Conflict("an account with this email exists", code="email_taken")
    old_email, user.email = user.email, new_email
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:
        raise Conflict("an account with this email exists", code="email_taken") from error
    verification.unverify(session=session, user=user)
    record_security_change(
        session=session,
        user=user,
        action="email.changed",
        change="email",
        settings=settings,
        origin=origin,
        now=now,
        also_notify=old_email,
    )
    verification.send_link(
        session=session, user=user, settings=settings, public_url=public_url, origin=origin, now=now
    )


def begin_two_factor(
    *,
    session: Session,
    user: User,
    proof: StepUp,
    settings: AuthSettings,
    now: datetime | None = None,
) -> two_factor.Enrolment:
    """Start (or restart) an enrolment: a new secret, on only after ``confirm_two_factor``."""
    proof.require(user)
    return two_factor.enrol(session=session, user=user, settings=settings, now=now or utcnow())


def confirm_two_factor(
    *,
    session: Session,
    user: User,
    otp: str,
    proof: StepUp,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> list[str]:
    """Turn 2FA on with a first code; every other session (signed in without 2FA) is signed
    out. The step-up too, so that a token alone cannot finish an enrolment its owner began."""
    now = now or utcnow()
    proof.require(user)
    codes = two_factor.confirm(
        session=session, user=user, otp=otp, settings=settings, now=now, origin=origin
    )
    revoke_other_sessions(
        session=session, user=user, keep_session_id=proof.session_id, origin=origin, now=now
    )
    record_security_change(
        session=session,
        user=user,
        action="two_factor.enabled",
        change="two-factor authentication turned on",
        settings=settings,
        origin=origin,
        now=now,
    )
    return codes


def regenerate_recovery_codes(
    *,
    session: Session,
    user: User,
    proof: StepUp,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> list[str]:
    """New recovery codes (shown once); the old ones stop working."""
    now = now or utcnow()
    proof.require(user)
    codes = two_factor.new_recovery_codes(session=session, user=user, settings=settings, now=now)
    record_security_change(
        session=session,
        user=user,
        action="two_factor.recovery_codes_regenerated",
        change="new recovery codes",
        settings=settings,
        origin=origin,
        now=now,
    )
    return codes


@dataclass(frozen=True, slots=True)
class EnrolledTotp:
    secret: str
    otpauth_uri: str
    recovery_codes: list[str]


def enrol_totp_now(
    *, session: Session, user: User, settings: AuthSettings, now: datetime | None = None
) -> EnrolledTotp:
    """2FA on at once, without a first code, for an operator created at the server (CLI)."""
    now = now or utcnow()
    enrolment = two_factor.enrol(session=session, user=user, settings=settings, now=now)
    codes = two_factor.activate_without_code(session=session, user=user, settings=settings, now=now)
    audit.record(
        session=session,
        action="two_factor.enabled",
        subject_user_id=user.id,
        now=now,
        details={"via": "cli"},
    )
    return EnrolledTotp(
        secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, recovery_codes=codes
    )


def disable_two_factor(
    *,
    session: Session,
    user: User,
    proof: StepUp,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """Turn 2FA off: the step-up checked the password and a current or recovery code."""
    now = now or utcnow()
    proof.require(user)
    two_factor.disable(session=session, user=user)
    record_security_change(
        session=session,
        user=user,
        action="two_factor.disabled",
        change="two-factor authentication turned off",
        settings=settings,
        origin=origin,
        now=now,
    )
