"""Two-factor authentication with TOTP (R-SEC-3): enrol, confirm, check, disable.

Every code check goes through ``_check``: the factor row is locked for the transaction (so one
code cannot be used twice by parallel requests), a wrong or replayed code counts, 3 in a row
block 2FA for 15 minutes and every 5th sends a security alert. The check is a kept step
(``db.keep``): the count, the block, the audit event and the alert stay when the request is
refused, and the unit of work runs the step again (under the lock, from ids) after rolling the
rest back. What a right code changes (the step used, the count reset, a recovery code spent) is
written in the unit of work itself, so it goes if the request is refused later.

The seed is stored sealed with the vault key (R-SEC-11, ``strongroom.vault``): ``secret_of``
opens it for a check, bound to the user's row, so the database alone never shows a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from strongroom.db import keep
from strongroom.errors import Conflict, NotFound, invariant, present
from strongroom.identity import audit, totp
from strongroom.identity.audit import Origin
from strongroom.identity.errors import InvalidOtp, OtpRequired, TwoFactorBlocked
from strongroom.identity.models import RecoveryCode, TotpFactor, User
from strongroom.notify import outbox
from strongroom.settings import AuthSettings
from strongroom.vault import Sealed

CODE_MAX_CHARS = 32


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class Passed:
    """A code that passed the check: the TOTP step it matched, or the recovery code it is."""

    step: int | None = None
    recovery_code_id: int | None = None


def is_enabled(user: User) -> bool:
    return user.two_factor_enabled_at is not None


def _factor(session: Session, user_id: str) -> TotpFactor | None:
    return session.get(TotpFactor, user_id, with_for_update=True, populate_existing=True)


def secret_context(user_id: str) -> str:
    """What a user's seed is sealed for (the vault's associated data): a sealed seed copied
    to another user's row does not open."""
    return f"identity_totp.secret:{user_id}"


def _seal(factor: TotpFactor, secret: str, settings: AuthSettings) -> None:
    sealed = settings.vault.seal(secret, context=secret_context(factor.user_id))
    factor.secret_sealed, factor.secret_key_id = sealed.ciphertext, sealed.key_id


def secret_of(factor: TotpFactor, settings: AuthSettings) -> str:
    """The seed, opened with the vault key that sealed it (R-SEC-11); ``VaultError`` if it
    was altered, moved or sealed with a key this server does not have."""
    sealed = Sealed(key_id=factor.secret_key_id, ciphertext=factor.secret_sealed)
    return settings.vault.open(sealed, context=secret_context(factor.user_id))


def enrol(*, session: Session, user: User, settings: AuthSettings, now: datetime) -> Enrolment:
    """Start (or restart) enrolment with a new secret; on only after ``confirm``."""
    if is_enabled(user):
        raise Conflict("two-factor authentication is already on", code="two_factor_already_enabled")
    factor = _factor(session, user.id)
    secret = totp.new_secret()
    if factor is None:
        factor = TotpFactor(user_id=user.id, created_at=now, last_used_step=-1, failures=0)
        session.add(factor)
    else:  # a new secret, but the failure count and any block stay
        factor.created_at, factor.last_used_step = now, -1
    _seal(factor, secret, settings)
    session.flush()
    return Enrolment(secret=secret, otpauth_uri=_uri(secret, user, settings))


def _uri(secret: str, user: User, settings: AuthSettings) -> str:
    return totp.provisioning_uri(secret, account=user.email, issuer=settings.totp_issuer)


def pending_uri(*, session: Session, user: User, settings: AuthSettings) -> str:
    """The otpauth URI of an enrolment in progress (for its QR code); never of an active one."""
    factor = session.get(TotpFactor, user.id)
    if factor is None or factor.confirmed_at is not None or is_enabled(user):
        raise NotFound("no two-factor enrolment in progress", code="no_enrolment_in_progress")
    return _uri(secret_of(factor, settings), user, settings)


def confirm(
    *, session: Session, user: User, otp: str, settings: AuthSettings, now: datetime, origin: Origin
) -> list[str]:
    """Turn 2FA on with a first code; returns the recovery codes (shown once)."""
    factor = _factor(session, user.id)
    if factor is None or is_enabled(user):
        raise _not_enrolling()
    _check(session, user.id, otp, settings, now, origin, enrolling=True)
    return _activate(session, user, factor, settings, now)


def _not_enrolling() -> Conflict:
    return Conflict("start enrolment first: POST /v1/me/2fa", code="no_enrolment_in_progress")


def _not_enabled() -> Conflict:
    return Conflict("two-factor authentication is not on", code="two_factor_not_enabled")


def activate_without_code(
    *, session: Session, user: User, settings: AuthSettings, now: datetime
) -> list[str]:
    """Turn a pending enrolment on without a first code: only for ``strongroom admin
    create-operator --with-totp-secret``, run by someone at the server."""
    factor = present(_factor(session, user.id), "activate needs a pending enrolment")
    invariant(not is_enabled(user), "activate needs a pending enrolment")
    return _activate(session, user, factor, settings, now)


def _activate(
    session: Session, user: User, factor: TotpFactor, settings: AuthSettings, now: datetime
) -> list[str]:
    factor.confirmed_at = now
    user.two_factor_enabled_at = now
    return _new_recovery_codes(session, user, settings, now)


def new_recovery_codes(
    *, session: Session, user: User, settings: AuthSettings, now: datetime
) -> list[str]:
    """Replace the user's recovery codes with new ones (shown once); 2FA must be on."""
    if not is_enabled(user):
        raise _not_enabled()
    return _new_recovery_codes(session, user, settings, now)


def _new_recovery_codes(
    session: Session, user: User, settings: AuthSettings, now: datetime
) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = totp.new_recovery_codes(settings.recovery_codes)
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=totp.recovery_hash(code), created_at=now)
        for code in codes
    )
    session.flush()
    return codes


def disable(*, session: Session, user: User) -> None:
    """Turn 2FA off. The caller has checked a current code or a recovery code (the step-up of
    ``identity.service.disable_two_factor``)."""
    if not is_enabled(user):
        raise _not_enabled()
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.execute(delete(TotpFactor).where(TotpFactor.user_id == user.id))
    user.two_factor_enabled_at = None
    session.flush()


def verify(
    *,
    session: Session,
    user: User,
    code: str | None,
    settings: AuthSettings,
    now: datetime,
    origin: Origin,
) -> None:
    """The second factor of a user with 2FA on: a TOTP code or an unused recovery code."""
    invariant(is_enabled(user), "verify needs 2FA on")
    _check(session, user.id, code, settings, now, origin, enrolling=False)


def _check(
    session: Session,
    user_id: str,
    code: str | None,
    settings: AuthSettings,
    now: datetime,
    origin: Origin,
    *,
    enrolling: bool,
) -> None:
    """Check a code as a kept step, then apply what its passing changes."""
    step = _code_check(user_id, code, settings, now, origin, enrolling=enrolling)
    _accept(session, user_id, keep(session, step), now, origin)


def _code_check(
    user_id: str,
    code: str | None,
    settings: AuthSettings,
    now: datetime,
    origin: Origin,
    *,
    enrolling: bool,
) -> Callable[[Session], Passed]:
    """The kept step: lock the factor, refuse while blocked, count a wrong or replayed code
    (``_failure``). ``enrolling``: the first code of a pending enrolment (no recovery codes)."""

    def check(kept: Session) -> Passed:
        factor = _factor(kept, user_id)
        if factor is None or (factor.confirmed_at is None) != enrolling:
            raise _not_enrolling() if enrolling else _not_enabled()  # changed since
        user = kept.get_one(User, user_id)
        return _decide(kept, user, factor, code, settings, now, origin, recovery=not enrolling)

    return check


def _decide(
    session: Session,
    user: User,
    factor: TotpFactor,
    code: str | None,
    settings: AuthSettings,
    now: datetime,
    origin: Origin,
    *,
    recovery: bool,
) -> Passed:
    if factor.blocked_until is not None and factor.blocked_until > now:
        raise TwoFactorBlocked(factor.blocked_until)
    if code is None or not code.strip():
        raise OtpRequired()
    code = code[:CODE_MAX_CHARS]
    if totp.looks_like_totp(code) or not recovery:
        match, step = totp.check(
            secret_of(factor, settings),
            code.replace(" ", ""),
            now=now,
            last_used_step=factor.last_used_step,
        )
        if match is totp.Match.ACCEPTED and step is not None:
            return Passed(step=step)
        _failure(session, user, factor, settings, now, origin, reused=match is totp.Match.REUSED)
    row = session.scalars(
        select(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == totp.recovery_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .with_for_update()
    ).first()
    if row is None:
        _failure(session, user, factor, settings, now, origin, reused=False)
    return Passed(recovery_code_id=row.id)


def _accept(session: Session, user_id: str, passed: Passed, now: datetime, origin: Origin) -> None:
    """What a passed check changes: the failures in a row forgotten, the TOTP step used (no
    code is taken twice) or the recovery code spent (audited with how many are left)."""
    factor = present(session.get(TotpFactor, user_id), "a passed code has a factor")
    factor.failures = 0
    if passed.step is not None:
        factor.last_used_step = passed.step
    if passed.recovery_code_id is None:
        return
    row = present(session.get(RecoveryCode, passed.recovery_code_id), "the code just checked")
    left = recovery_codes_left(session=session, user_id=user_id) - 1
    row.used_at = now
    audit.record(
        session=session,
        action="two_factor.recovery_code_used",
        subject_user_id=user_id,
        origin=origin,
        now=now,
        details={"recovery_codes_left": left},
    )


def _failure(
    session: Session,
    user: User,
    factor: TotpFactor,
    settings: AuthSettings,
    now: datetime,
    origin: Origin,
    *,
    reused: bool,
) -> NoReturn:
    """Count a wrong code; block after ``totp_block_after`` in a row, alert every
    ``totp_alert_after``. Always raises."""
    factor.failures += 1
    blocked = factor.failures >= settings.totp_block_after
    if blocked:
        factor.blocked_until = now + timedelta(seconds=settings.totp_block_s)
    audit.record(
        session=session,
        action="two_factor.failed",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={
            "failures_in_a_row": factor.failures,
            "reused_code": reused,
            "blocked_until": factor.blocked_until if blocked else None,
        },
    )
    if factor.failures % settings.totp_alert_after == 0:
        outbox.send_to_user(
            session=session,
            user=user,
            template_id="security.two_factor_alert",
            context={
                "failures": factor.failures,
                "at": now,
                "ip": origin.ip,
                "blocked_until": factor.blocked_until or now,
            },
            now=now,
        )
    session.flush()
    if blocked and factor.blocked_until is not None:
        raise TwoFactorBlocked(factor.blocked_until)
    if reused:
        raise InvalidOtp("this code was used already: wait for the next one", code="otp_reused")
    raise InvalidOtp("the two-factor code is wrong")


def recovery_codes_left(*, session: Session, user_id: str) -> int:
    return len(
        session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )
