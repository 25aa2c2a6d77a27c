"""The two-step sign-in's pending sign-in (issue #10, finding 5), on PostgreSQL and SQLite:
the password step keeps no password, only a hashed single-use nonce that expires; the code step
completes it once. The clock is injected: no test sleeps."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity import pending_sign_in, totp
from strongroom.identity import service as identity
from strongroom.identity.models import AuthToken, LoginThrottle, PendingSignIn, TotpFactor, User
from strongroom.settings import Settings
from tests.integration.identity.conftest import PASSWORD, T0, make_user, seed

STEP_S = 30


def _two_factor_user(
    factory: sessionmaker[Session], settings: Settings, role: str | None = None
) -> tuple[User, str, list[str]]:
    """A user with 2FA on: the user, its TOTP seed and its recovery codes."""
    user = make_user(factory, settings, operator_role=role)
    with unit_of_work(factory) as session:
        found = session.get_one(User, user.id)
        enrolled = identity.enrol_totp_now(
            session=session, user=found, settings=settings.auth, now=T0
        )
    return user, seed(factory, settings, user), enrolled.recovery_codes


def _password_step(
    factory: sessionmaker[Session],
    settings: Settings,
    user: User,
    *,
    now: datetime = T0,
    operators_only: bool = False,
) -> identity.IssuedToken | identity.CodeAwaited:
    with unit_of_work(factory) as session:
        return identity.login_password_step(
            session=session,
            email=user.email,
            password=PASSWORD,
            settings=settings.auth,
            now=now,
            operators_only=operators_only,
        )


def _code_step(
    factory: sessionmaker[Session],
    settings: Settings,
    nonce: str,
    otp: str,
    *,
    now: datetime,
    operators_only: bool = False,
) -> identity.IssuedToken:
    with unit_of_work(factory) as session:
        return identity.login_code_step(
            session=session,
            nonce=nonce,
            otp=otp,
            settings=settings.auth,
            now=now,
            operators_only=operators_only,
        )


def _code(secret: str, at: datetime) -> str:
    return totp.code_at(secret, totp.time_step(at))


def _refused(code: str, call: object) -> None:
    with pytest.raises(DomainError) as refused:
        call()  # type: ignore[operator]
    assert refused.value.code == code


def _count(factory: sessionmaker[Session], model: type[object]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _failures(factory: sessionmaker[Session], user: User) -> int:
    with factory() as session:
        return session.get_one(TotpFactor, user.id).failures


def test_the_password_step_keeps_a_hashed_nonce_and_no_password(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user, _, _ = _two_factor_user(factory, settings)
    waiting = _password_step(factory, settings, user)
    assert isinstance(waiting, identity.CodeAwaited)
    assert waiting.expires_at == T0 + timedelta(seconds=settings.auth.sign_in_pending_ttl_s)
    assert settings.auth.sign_in_pending_ttl_s == 180  # short by default
    with factory() as session:
        row = session.scalars(select(PendingSignIn)).one()
    assert row.user_id == user.id and row.consumed_at is None and row.operators_only is False
    assert row.nonce_hash == hashlib.sha256(waiting.nonce.encode()).hexdigest()
    assert waiting.nonce not in row.nonce_hash and PASSWORD not in repr(row.__dict__)
    assert _count(factory, AuthToken) == 0  # no session before the code


def test_without_two_factor_the_password_step_signs_in(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user = make_user(factory, settings)
    assert isinstance(_password_step(factory, settings, user), identity.IssuedToken)
    assert _count(factory, PendingSignIn) == 0


def test_the_code_completes_the_sign_in_once(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user, secret, recovery = _two_factor_user(factory, settings)
    waiting = _password_step(factory, settings, user)
    assert isinstance(waiting, identity.CodeAwaited)
    later = T0 + timedelta(seconds=STEP_S)
    issued = _code_step(factory, settings, waiting.nonce, _code(secret, later), now=later)
    with factory() as session:
        assert identity.authenticate(session=session, token=issued.token, now=later).id == user.id
    # replayed with another valid second factor: the nonce is used up, not the code
    tokens, failures = _count(factory, AuthToken), _failures(factory, user)
    again = T0 + timedelta(seconds=2 * STEP_S)
    _refused(
        "sign_in_expired",
        lambda: _code_step(factory, settings, waiting.nonce, _code(secret, again), now=again),
    )
    _refused(
        "sign_in_expired",
        lambda: _code_step(factory, settings, waiting.nonce, recovery[0], now=again),
    )
    assert _count(factory, AuthToken) == tokens and _failures(factory, user) == failures


def test_an_expired_or_unknown_nonce_is_refused_and_counts_nothing(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user, secret, _ = _two_factor_user(factory, settings)
    waiting = _password_step(factory, settings, user)
    assert isinstance(waiting, identity.CodeAwaited)
    expired = waiting.expires_at
    for nonce in (waiting.nonce, "x" * 43, "", "y" * 500):
        _refused(
            "sign_in_expired",
            lambda n=nonce: _code_step(factory, settings, n, _code(secret, expired), now=expired),
        )
    assert _failures(factory, user) == 0 and _count(factory, AuthToken) == 0
    just_in_time = expired - timedelta(seconds=1)
    _code_step(factory, settings, waiting.nonce, _code(secret, just_in_time), now=just_in_time)


def test_a_wrong_code_counts_and_leaves_the_pending_sign_in_for_another_try(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user, secret, _ = _two_factor_user(factory, settings)
    waiting = _password_step(factory, settings, user)
    assert isinstance(waiting, identity.CodeAwaited)
    _refused("invalid_otp", lambda: _code_step(factory, settings, waiting.nonce, "000000", now=T0))
    assert _failures(factory, user) == 1  # 2FA's count is kept, the use is rolled back
    with factory() as session:
        assert session.scalars(select(PendingSignIn)).one().consumed_at is None
    later = T0 + timedelta(seconds=STEP_S)
    _code_step(factory, settings, waiting.nonce, _code(secret, later), now=later)
    assert _failures(factory, user) == 0


def test_the_console_and_the_app_do_not_complete_each_others_sign_in(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    operator, secret, _ = _two_factor_user(factory, settings, role="support")
    app_step = _password_step(factory, settings, operator)
    assert isinstance(app_step, identity.CodeAwaited)
    _refused(
        "sign_in_expired",
        lambda: _code_step(
            factory, settings, app_step.nonce, _code(secret, T0), now=T0, operators_only=True
        ),
    )
    console_step = _password_step(factory, settings, operator, operators_only=True)
    assert isinstance(console_step, identity.CodeAwaited)
    _refused(
        "sign_in_expired",
        lambda: _code_step(factory, settings, console_step.nonce, _code(secret, T0), now=T0),
    )
    _code_step(
        factory, settings, console_step.nonce, _code(secret, T0), now=T0, operators_only=True
    )


def test_a_lock_or_2fa_turned_off_meanwhile_refuses_the_code_step(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user, secret, _ = _two_factor_user(factory, settings)
    waiting = _password_step(factory, settings, user)
    assert isinstance(waiting, identity.CodeAwaited)
    with unit_of_work(factory) as session:  # five wrong passwords elsewhere lock the email
        throttle = session.get_one(LoginThrottle, user.email)  # the password step's row
        throttle.locks, throttle.locked_until = 1, T0 + timedelta(hours=2)
    _refused(
        "account_locked",
        lambda: _code_step(factory, settings, waiting.nonce, _code(secret, T0), now=T0),
    )
    with unit_of_work(factory) as session:
        session.delete(session.get_one(LoginThrottle, user.email))
        session.get_one(User, user.id).two_factor_enabled_at = None
    _refused(
        "sign_in_expired",
        lambda: _code_step(factory, settings, waiting.nonce, _code(secret, T0), now=T0),
    )


def test_used_and_expired_pending_sign_ins_are_deleted_at_the_next_one(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user, secret, _ = _two_factor_user(factory, settings)
    used = _password_step(factory, settings, user)
    assert isinstance(used, identity.CodeAwaited)
    _code_step(factory, settings, used.nonce, _code(secret, T0), now=T0)
    _password_step(factory, settings, user)  # expires unused
    later = T0 + timedelta(hours=1)
    _password_step(factory, settings, user, now=later)
    assert _count(factory, PendingSignIn) == 1


def test_find_answers_only_for_a_usable_pending_sign_in(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    user, _, _ = _two_factor_user(factory, settings)
    waiting = _password_step(factory, settings, user)
    assert isinstance(waiting, identity.CodeAwaited)
    with factory() as session:
        found = pending_sign_in.find(
            session=session, nonce=waiting.nonce, operators_only=False, now=T0
        )
        assert found is not None and found.email == user.email
        for nonce, operators_only, now in (
            (waiting.nonce, True, T0),
            (waiting.nonce, False, waiting.expires_at),
            ("z" * 43, False, T0),
        ):
            assert (
                pending_sign_in.find(
                    session=session, nonce=nonce, operators_only=operators_only, now=now
                )
                is None
            )
