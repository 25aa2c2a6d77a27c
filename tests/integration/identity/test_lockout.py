"""R-SEC-2: 5 wrong passwords lock sign-in for 2 hours, 5 more for 24 hours; the user is emailed
on each lock; an unknown email gets the same answers; parallel guesses cannot beat the count."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.integration.identity.conftest import PASSWORD, T0, make_user


def attempt(
    factory: sessionmaker[Session], settings: Settings, email: str, password: str, at: datetime
) -> str:
    """One sign-in in its own unit of work, as a request runs it (kept records stay on a
    refusal); the outcome's code (``ok`` on success)."""
    try:
        with db.unit_of_work(factory) as session:
            identity.login(
                session=session,
                email=email,
                password=password,
                settings=settings.auth,
                ip="203.0.113.5",
                now=at,
            )
    except DomainError as error:
        return error.code
    return "ok"


def locked_until(factory, settings, email: str, at: datetime) -> str:
    with pytest.raises(DomainError) as error, db.unit_of_work(factory) as session:
        identity.login(
            session=session, email=email, password="x" * 12, settings=settings.auth, now=at
        )
    assert error.value.code == "account_locked"
    return str(error.value.details["locked_until"])


def lock_emails(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxEmail)
                .where(OutboxEmail.template_id == "security.account_locked")
            )
            or 0
        )


def test_four_wrong_then_right_signs_in_and_forgets_the_failures(factory, settings):
    user = make_user(factory, settings)
    codes = [attempt(factory, settings, user.email, "wrong-password-1", T0) for _ in range(4)]
    assert codes == ["invalid_credentials"] * 4
    assert attempt(factory, settings, user.email, PASSWORD, T0) == "ok"
    codes = [attempt(factory, settings, user.email, "wrong-password-1", T0) for _ in range(4)]
    assert codes == ["invalid_credentials"] * 4  # counting started again


def test_five_wrong_lock_for_two_hours_five_more_for_a_day(factory, settings):
    user = make_user(factory, settings)
    codes = [attempt(factory, settings, user.email, "wrong-password-1", T0) for _ in range(5)]
    assert codes == ["invalid_credentials"] * 4 + ["account_locked"]
    assert lock_emails(factory) == 1
    assert locked_until(factory, settings, user.email, T0) == (T0 + timedelta(hours=2)).isoformat()
    just_before = T0 + timedelta(hours=2) - timedelta(seconds=1)
    assert attempt(factory, settings, user.email, PASSWORD, just_before) == "account_locked"
    after = T0 + timedelta(hours=2)
    codes = [attempt(factory, settings, user.email, "wrong-password-1", after) for _ in range(5)]
    assert codes == ["invalid_credentials"] * 4 + ["account_locked"]
    assert lock_emails(factory) == 2
    assert (
        locked_until(factory, settings, user.email, after)
        == (after + timedelta(hours=24)).isoformat()
    )
    assert attempt(factory, settings, user.email, PASSWORD, after + timedelta(hours=23)) == (
        "account_locked"
    )
    assert attempt(factory, settings, user.email, PASSWORD, after + timedelta(hours=24)) == "ok"


def test_an_unknown_email_gets_the_same_answers(factory, settings):
    user = make_user(factory, settings)
    known = [attempt(factory, settings, user.email, "wrong-password-1", T0) for _ in range(6)]
    unknown = [
        attempt(factory, settings, "nobody@example.com", "wrong-password-1", T0) for _ in range(6)
    ]
    assert known == unknown == ["invalid_credentials"] * 4 + ["account_locked"] * 2
    assert locked_until(factory, settings, "nobody@example.com", T0) == locked_until(
        factory, settings, user.email, T0
    )
    assert lock_emails(factory) == 1  # only a real account gets mail


def test_case_and_spaces_do_not_give_fresh_attempts(factory, settings):
    user = make_user(factory, settings)
    variants = [user.email, user.email.upper(), f"  {user.email} ", user.email.title(), user.email]
    codes = [attempt(factory, settings, v, "wrong-password-1", T0) for v in variants]
    assert codes[-1] == "account_locked"


def test_old_failures_are_forgotten_after_a_day(factory, settings):
    user = make_user(factory, settings)
    for _ in range(4):
        attempt(factory, settings, user.email, "wrong-password-1", T0)
    later = T0 + timedelta(hours=25)
    codes = [attempt(factory, settings, user.email, "wrong-password-1", later) for _ in range(4)]
    assert codes == ["invalid_credentials"] * 4


@pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
def test_parallel_guesses_cannot_get_past_five(factory, settings, any_db):
    user = make_user(factory, settings)
    results: list[str] = []
    lock = threading.Lock()

    def guess(index: int) -> None:
        outcome = attempt(
            db.make_session_factory(any_db), settings, user.email, f"wrong-password-{index}", T0
        )
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 12
    assert results.count("invalid_credentials") == 4
    assert results.count("account_locked") == 8
    assert attempt(factory, settings, user.email, PASSWORD, T0) == "account_locked"
