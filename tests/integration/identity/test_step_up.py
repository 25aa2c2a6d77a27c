"""R-SEC-8 step-up in the identity service: a change needs the password again (and the 2FA code
when 2FA is on) in a session of the user. A wrong password counts toward that session's own
limit (kept, as sign-in's count is), never the sign-in lockout of the email (issue #10, finding
7): at the limit the session is signed out and the owner emailed, while the owner can still
sign in. A wrong code counts toward the 2FA block, as at sign-in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError, InvariantViolation
from strongroom.identity import service as identity
from strongroom.identity import totp
from strongroom.identity.models import (
    AuditEvent,
    AuthToken,
    LoginThrottle,
    StepUpFailures,
    TotpFactor,
    User,
)
from strongroom.identity.step_up import StepUp
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.integration.identity.conftest import (
    PASSWORD,
    T0,
    make_user,
    seed,
    signed_in,
    stepped_up,
)
from tests.integration.identity.test_lockout import attempt
from tests.integration.identity.test_two_factor import enrol, login


def step_up(
    factory: sessionmaker[Session],
    settings: Settings,
    user: User,
    session_id: str,
    password: str | None = PASSWORD,
    otp: str | None = None,
    at=T0,
) -> StepUp:
    """A step-up in its own unit of work, as a request makes it (a refusal keeps only what the
    service kept)."""
    with unit_of_work(factory) as session:
        return identity.step_up(
            session=session,
            user=session.get_one(User, user.id),
            session_id=session_id,
            password=password,
            otp=otp,
            settings=settings.auth,
            now=at,
        )


def refusal(call, *args, **kwargs) -> DomainError:
    with pytest.raises(DomainError) as error:
        call(*args, **kwargs)
    return error.value


def count(factory: sessionmaker[Session], model, *where) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_no_password_is_refused_and_writes_nothing(factory, settings):
    user = make_user(factory, settings)
    session_id = signed_in(factory, user)
    events = count(factory, AuditEvent)
    for missing in (None, ""):
        error = refusal(step_up, factory, settings, user, session_id, password=missing)
        assert (error.code, error.status) == ("reauthentication_required", 403)
    assert count(factory, AuditEvent) == events and count(factory, StepUpFailures) == 0


def test_wrong_passwords_count_per_session_and_sign_it_out_never_the_owner(factory, settings):
    user = make_user(factory, settings)
    stolen, owners = signed_in(factory, user), signed_in(factory, user)
    limit = settings.auth.step_up_failures_max
    answers = [
        refusal(step_up, factory, settings, user, stolen, password=f"guess-number-{n}").code
        for n in range(limit)
    ]
    assert answers == ["invalid_credentials"] * (limit - 1) + ["session_revoked"]
    with factory() as session:
        assert session.get_one(AuthToken, stolen).revoked_at == T0  # the guessing session ends
        assert session.get_one(AuthToken, owners).revoked_at is None  # the owner's stays
        assert session.get(LoginThrottle, user.email) is None  # sign-in was never counted
    assert count(factory, AuditEvent, AuditEvent.action == "step_up.failed") == limit
    assert count(factory, AuditEvent, AuditEvent.action == "step_up.session_signed_out") == 1
    assert count(factory, OutboxEmail, OutboxEmail.template_id == "security.step_up_signed_out")
    # the signed-out session cannot go on guessing, not even with the right password
    assert refusal(step_up, factory, settings, user, stolen).code == "invalid_token"
    assert attempt(factory, settings, user.email, PASSWORD, T0) == "ok"  # the owner signs in
    step_up(factory, settings, user, owners)  # and changes settings in another session


def test_a_right_password_forgets_the_sessions_failures(factory, settings):
    user = make_user(factory, settings)
    session_id = signed_in(factory, user)
    limit = settings.auth.step_up_failures_max
    for _ in range(limit - 1):
        refusal(step_up, factory, settings, user, session_id, password="not-my-password")
    proof = step_up(factory, settings, user, session_id)
    assert proof == StepUp(user_id=user.id, session_id=session_id, at=T0)
    assert count(factory, StepUpFailures) == 0
    refusal(step_up, factory, settings, user, session_id, password="not-my-password")
    with factory() as session:
        assert session.get_one(StepUpFailures, session_id).failures == 1
        assert session.get_one(AuthToken, session_id).revoked_at is None


def test_another_users_session_cannot_step_up(factory, settings):
    alice, bob = make_user(factory, settings), make_user(factory, settings, "Bob Wong")
    bobs = signed_in(factory, bob)
    assert refusal(step_up, factory, settings, alice, bobs).code == "invalid_token"


def test_with_two_factor_on_the_code_is_needed_and_a_wrong_one_counts(factory, settings):
    user = make_user(factory, settings)
    enrol(factory, settings, user)
    session_id = signed_in(factory, user)
    at = T0 + timedelta(minutes=2)
    assert refusal(step_up, factory, settings, user, session_id, at=at).code == "otp_required"
    wrong = refusal(step_up, factory, settings, user, session_id, otp="000000", at=at)
    assert wrong.code == "invalid_otp"
    with factory() as session:
        assert session.get_one(TotpFactor, user.id).failures == 1  # the 2FA block's count
    right = totp.code_at(seed(factory, settings, user), totp.time_step(at))
    step_up(factory, settings, user, session_id, otp=right, at=at)
    with factory() as session:
        assert session.get_one(TotpFactor, user.id).failures == 0


def test_a_proof_is_for_one_user(factory, settings):
    alice, bob = make_user(factory, settings), make_user(factory, settings, "Bob Wong")
    alices = signed_in(factory, alice)
    with pytest.raises(InvariantViolation), unit_of_work(factory) as session:
        proof = stepped_up(session, session.get_one(User, alice.id), settings, alices)
        identity.set_anti_phishing_code(
            session=session,
            user=session.get_one(User, bob.id),
            code="Ab12Z9",
            proof=proof,
            settings=settings.auth,
        )
    with factory() as session:
        assert session.get_one(User, bob.id).anti_phishing_code is None


def test_new_recovery_codes_replace_the_old_ones(factory, settings):
    user = make_user(factory, settings)
    old = enrol(factory, settings, user)
    session_id = signed_in(factory, user)
    with unit_of_work(factory) as session:
        found = session.get_one(User, user.id)
        new = identity.regenerate_recovery_codes(
            session=session,
            user=found,
            proof=stepped_up(session, found, settings, session_id, otp=old[0]),
            settings=settings.auth,
            now=T0,
        )
    assert len(new) == 10 and not set(new) & set(old)
    assert refusal(login, factory, settings, user, old[1]).code == "invalid_otp"
    login(factory, settings, user, new[0])
