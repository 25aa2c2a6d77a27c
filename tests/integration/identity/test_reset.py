"""R-SEC-4: a password is reset only with the single-use emailed token, within 30 minutes, and
the 2FA code when 2FA is on; knowing who someone is never suffices."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity import reset, totp
from strongroom.identity import service as identity
from strongroom.identity.models import AuthToken, PasswordReset, User
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.integration.identity.conftest import PASSWORD, PUBLIC_URL, T0, make_user, reload, seed
from tests.integration.identity.test_lockout import attempt
from tests.integration.identity.test_two_factor import enrol

NEW_PASSWORD = "a-brand-new-passphrase-7"


def ask(factory: sessionmaker[Session], settings: Settings, email: str, at=T0) -> None:
    with unit_of_work(factory) as session:
        reset.request_reset(
            session=session,
            email=email,
            settings=settings.auth,
            public_url=PUBLIC_URL,
            now=at,
        )


def emailed_token(factory: sessionmaker[Session], user: User) -> str:
    """The token as the user reads it in the newest reset email."""
    with factory() as session:
        body = session.scalars(
            select(OutboxEmail.body_text)
            .where(
                OutboxEmail.user_id == user.id, OutboxEmail.template_id == "security.password_reset"
            )
            .order_by(OutboxEmail.id.desc())
        ).first()
    assert body is not None
    match = re.search(r"reset token: (\S+)", body)
    assert match is not None
    return match.group(1)


def confirm(
    factory: sessionmaker[Session],
    settings: Settings,
    token: str,
    otp: str | None = None,
    at=T0,
    password: str = NEW_PASSWORD,
) -> None:
    """Confirm a reset in its own unit of work, as the router does (a refusal keeps only the
    records the service kept, e.g. a wrong 2FA code's count)."""
    with unit_of_work(factory) as session:
        reset.confirm_reset(
            session=session,
            token=token,
            new_password=password,
            otp=otp,
            settings=settings.auth,
            now=at,
        )


def refused_code(call, *args, **kwargs) -> str:
    with pytest.raises(DomainError) as error:
        call(*args, **kwargs)
    return error.value.code


def test_reset_with_the_emailed_token(factory, settings):
    user = make_user(factory, settings)
    assert attempt(factory, settings, user.email, PASSWORD, T0) == "ok"
    ask(factory, settings, user.email)
    token = emailed_token(factory, user)
    with factory() as session:  # only its hash is stored
        assert (
            session.scalar(
                select(func.count())
                .select_from(PasswordReset)
                .where(PasswordReset.token_hash == token)
            )
            == 0
        )
    confirm(factory, settings, token, at=T0 + timedelta(minutes=29))
    assert attempt(factory, settings, user.email, PASSWORD, T0) == "invalid_credentials"
    assert attempt(factory, settings, user.email, NEW_PASSWORD, T0) == "ok"
    with factory() as session:  # the session from before the reset is signed out
        first = session.scalars(select(AuthToken).order_by(AuthToken.created_at)).first()
        assert first is not None and first.revoked_at is not None
    assert reload(factory, user).withdrawals_frozen_until == T0 + timedelta(minutes=29, hours=24)


def test_the_token_works_once(factory, settings):
    user = make_user(factory, settings)
    ask(factory, settings, user.email)
    token = emailed_token(factory, user)
    confirm(factory, settings, token)
    assert refused_code(confirm, factory, settings, token, password="yet-another-pass-8") == (
        "invalid_reset_token"
    )


def test_the_token_expires_after_30_minutes(factory, settings):
    user = make_user(factory, settings)
    ask(factory, settings, user.email)
    token = emailed_token(factory, user)
    late = T0 + timedelta(minutes=30)
    assert refused_code(confirm, factory, settings, token, at=late) == "invalid_reset_token"


def test_a_newer_reset_voids_the_older_token_once_used(factory, settings):
    user = make_user(factory, settings)
    ask(factory, settings, user.email)
    older = emailed_token(factory, user)
    ask(factory, settings, user.email)
    newer = emailed_token(factory, user)
    assert older != newer
    confirm(factory, settings, newer)
    assert refused_code(confirm, factory, settings, older) == "invalid_reset_token"


def test_2fa_code_is_required_when_2fa_is_on(factory, settings):
    user = make_user(factory, settings)
    enrol(factory, settings, user)
    ask(factory, settings, user.email)
    token = emailed_token(factory, user)
    at = T0 + timedelta(minutes=2)
    assert refused_code(confirm, factory, settings, token, at=at) == "otp_required"
    assert refused_code(confirm, factory, settings, token, otp="000000", at=at) == "invalid_otp"
    right = totp.code_at(seed(factory, settings, user), totp.time_step(at))
    confirm(factory, settings, token, otp=right, at=at)  # the token survived the refusals
    assert attempt(factory, settings, user.email, NEW_PASSWORD, at) == "otp_required"


def test_an_unknown_email_sends_nothing_and_its_row_never_resets(factory, settings):
    make_user(factory, settings)
    with factory() as session:
        before = session.scalar(select(func.count()).select_from(OutboxEmail))
    ask(factory, settings, "nobody@example.com")
    ask(factory, settings, "not an email")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEmail)) == before
        rows = session.scalars(select(PasswordReset)).all()
    # the same work as for an account (issue #10): a row, for no one, that no token opens
    assert sorted(row.email for row in rows) == ["nobody@example.com", "not an email"]
    assert all(row.user_id is None for row in rows)


def test_personal_data_never_resets(factory, settings):
    user = make_user(factory, settings)
    ask(factory, settings, user.email)
    for guess in (user.id, user.name, user.email, "Alice Chan 1990-01-01 A1234567", ""):
        assert refused_code(confirm, factory, settings, guess) == "invalid_reset_token"
    assert attempt(factory, settings, user.email, PASSWORD, T0) == "ok"


def test_reset_emails_are_limited_per_hour(factory, settings):
    user = make_user(factory, settings)
    for _ in range(5):
        ask(factory, settings, user.email)
    with factory() as session:
        sent = session.scalar(
            select(func.count())
            .select_from(OutboxEmail)
            .where(OutboxEmail.template_id == "security.password_reset")
        )
    assert sent == settings.auth.reset_emails_per_hour_max
    ask(factory, settings, user.email, at=T0 + timedelta(minutes=61))
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(PasswordReset)) == 4


def test_weak_new_password_is_refused_and_the_token_kept(factory, settings):
    user = make_user(factory, settings)
    ask(factory, settings, user.email)
    token = emailed_token(factory, user)
    assert refused_code(confirm, factory, settings, token, password="password123") == (
        "weak_password"
    )
    confirm(factory, settings, token)


def test_a_reset_lifts_the_sign_in_lock(factory, settings):
    user = make_user(factory, settings)
    for _ in range(5):
        attempt(factory, settings, user.email, "wrong-password-1", T0)
    assert attempt(factory, settings, user.email, PASSWORD, T0) == "account_locked"
    ask(factory, settings, user.email)
    confirm(factory, settings, emailed_token(factory, user))
    assert attempt(factory, settings, user.email, NEW_PASSWORD, T0) == "ok"


def test_register_refuses_a_common_password(factory, settings):
    with pytest.raises(DomainError) as error, unit_of_work(factory) as session:
        identity.register(
            session=session,
            email="c@example.com",
            password="1234567890",
            name="C",
            region="HK",
            settings=settings.auth,
        )
    assert error.value.code == "weak_password"
    assert error.value.details["reason"] == "common_password"
