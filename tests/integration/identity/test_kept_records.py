"""Issue #9: a refused sign-in, re-authentication or 2FA check keeps exactly what the identity
service marks as kept (the failure count, the lock, their audit entries and emails), while every
other write of the same unit of work is rolled back; and a check that passed in a request
refused later spends nothing (no recovery code used, no failures forgotten)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity.models import AuditEvent, LoginThrottle, RecoveryCode, TotpFactor, User
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.integration.identity.conftest import (
    PASSWORD,
    T0,
    make_user,
    reload,
    signed_in,
    stepped_up,
)
from tests.integration.identity.test_lockout import attempt
from tests.integration.identity.test_two_factor import enrol, login


@dataclass(frozen=True)
class Tables:
    users: set[str]
    actions: list[str]
    emails: list[str]
    throttles: dict[str, tuple[int, int]]


def tables(factory: sessionmaker[Session]) -> Tables:
    """What the tables a sign-in may write hold: user emails, audit actions and email templates
    in order, and each throttle row's (failures, locks)."""
    with factory() as session:
        return Tables(
            users=set(session.scalars(select(User.email))),
            actions=list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))),
            emails=list(session.scalars(select(OutboxEmail.template_id).order_by(OutboxEmail.id))),
            throttles={
                row.email: (row.failures, row.locks)
                for row in session.scalars(select(LoginThrottle))
            },
        )


def other_writes(
    session: Session, settings: Settings, user_id: str, session_id: str, otp: str | None = None
) -> None:
    """Writes that are not kept, made before the refusal in the same unit of work: a new account
    (its audit entry) and a security change of the user's after a step-up in ``session_id``
    (code, freeze, audit entry, email)."""
    user = session.get_one(User, user_id)
    identity.register(
        session=session,
        email="bob@example.com",
        password=PASSWORD,
        name="Bob Wong",
        region="HK",
        settings=settings.auth,
        now=T0,
    )
    identity.set_anti_phishing_code(
        session=session,
        user=user,
        code="Ab12Z9",
        proof=stepped_up(session, user, settings, session_id, otp=otp),
        settings=settings.auth,
        now=T0,
    )


def sign_in_after_other_writes(
    factory: sessionmaker[Session],
    settings: Settings,
    user: User,
    password: str,
    otp=None,
    step_up_otp: str | None = None,
) -> DomainError:
    """A sign-in refused after ``other_writes`` in one unit of work; the refusal. Checks that
    the other writes were rolled back."""
    frozen_until = reload(factory, user).withdrawals_frozen_until
    session_id = signed_in(factory, user)
    with pytest.raises(DomainError) as refused, unit_of_work(factory) as session:
        other_writes(session, settings, user.id, session_id, step_up_otp)
        identity.login(
            session=session,
            email=user.email,
            password=password,
            otp=otp,
            settings=settings.auth,
            ip="203.0.113.7",
            now=T0,
        )
    assert "bob@example.com" not in tables(factory).users
    found = reload(factory, user)
    assert found.anti_phishing_code is None and found.withdrawals_frozen_until == frozen_until
    return refused.value


def test_a_refused_login_keeps_its_count_and_audit_entry_and_nothing_else(factory, settings):
    alice = make_user(factory, settings)
    before = tables(factory)
    refused = sign_in_after_other_writes(factory, settings, alice, "wrong-password-1")
    assert refused.code == "invalid_credentials"
    after = tables(factory)
    assert after.users == before.users
    assert after.actions == [*before.actions, "login.failed"]
    assert after.emails == before.emails
    assert after.throttles == {alice.email: (1, 0)}


def test_the_locking_failure_keeps_the_lock_its_audit_entries_and_email(factory, settings):
    alice = make_user(factory, settings)
    for _ in range(4):
        attempt(factory, settings, alice.email, "wrong-password-1", T0)
    before = tables(factory)
    refused = sign_in_after_other_writes(factory, settings, alice, "wrong-password-1")
    assert refused.code == "account_locked"
    after = tables(factory)
    assert after.actions == [*before.actions, "login.failed", "login.locked"]
    assert after.emails == [*before.emails, "security.account_locked"]
    assert after.throttles == {alice.email: (0, 1)}


def test_a_wrong_code_keeps_its_count_block_audit_entry_and_alert(factory, settings):
    alice = make_user(factory, settings)
    recovery = enrol(factory, settings, alice)
    with unit_of_work(factory) as session:  # the 5th wrong code in a row alerts
        session.execute(update(TotpFactor).values(failures=4))
    before = tables(factory)
    refused = sign_in_after_other_writes(
        factory, settings, alice, PASSWORD, otp="000000", step_up_otp=recovery[0]
    )
    assert refused.code == "two_factor_blocked"
    after = tables(factory)
    assert after.actions == [*before.actions, "two_factor.failed"]
    assert after.emails == [*before.emails, "security.two_factor_alert"]
    assert after.throttles == {alice.email: (0, 0)}  # the right password counts nothing
    with factory() as session:
        factor = session.get_one(TotpFactor, alice.id)
        assert factor.failures == 5 and factor.blocked_until is not None


def test_a_check_passed_in_a_request_refused_later_spends_nothing(factory, settings):
    alice = make_user(factory, settings)
    recovery = enrol(factory, settings, alice)
    assert attempt(factory, settings, alice.email, "wrong-password-1", T0) == "invalid_credentials"
    session_id = signed_in(factory, alice)
    before = tables(factory)
    with pytest.raises(DomainError) as refused, unit_of_work(factory) as session:
        user = session.get_one(User, alice.id)
        identity.change_password(
            session=session,
            user=user,
            new_password="short",
            proof=stepped_up(session, user, settings, session_id, otp=recovery[0]),
            settings=settings.auth,
            now=T0,
        )
    assert refused.value.code == "weak_password"
    assert tables(factory) == before  # the failure is not forgotten, nothing is audited
    with factory() as session:
        used = session.scalars(select(RecoveryCode).where(RecoveryCode.used_at.is_not(None)))
        assert list(used) == []
    login(factory, settings, alice, recovery[0])  # the recovery code still works
