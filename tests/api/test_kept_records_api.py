"""Issue #9 over HTTP: a refused request keeps only what the identity service marks as kept. A
wrong password answers 401 and still counts towards the lock, with its audit entry; a wrong
current password in a password change counts toward the session's step-up limit (R-SEC-8), not
the sign-in lockout, and changes nothing else."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import audit, passwords
from strongroom.identity.models import AuditEvent, LoginThrottle, User
from tests.api.conftest import PASSWORD, signup


def failures(engine: Engine, email: str) -> int | None:
    with db.make_session_factory(engine)() as session:
        throttle = session.get(LoginThrottle, email)
        return None if throttle is None else throttle.failures


def actions(engine: Engine, user_id: str) -> list[tuple[str, dict]]:
    """The user's audit events, oldest first: (action, details)."""
    with db.make_session_factory(engine)() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.subject_user_id == user_id).order_by(AuditEvent.id)
        )
        return [(event.action, audit.details(event)) for event in events]


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_wrong_password_counts_and_is_audited(client, pg_db):
    alice = signup(client, "Alice")
    before = actions(pg_db, alice.user_id)
    wrong = {"email": alice.email, "password": "wrong-password-1"}
    refused(client.post("/v1/auth/login", json=wrong), 401, "invalid_credentials")
    assert failures(pg_db, alice.email) == 1
    assert actions(pg_db, alice.user_id) == [*before, ("login.failed", {"email": alice.email})]
    refused(client.post("/v1/auth/login", json=wrong), 401, "invalid_credentials")
    assert failures(pg_db, alice.email) == 2
    right = client.post("/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert right.status_code == 200, right.text
    assert failures(pg_db, alice.email) is None  # a sign-in forgets the failures


def test_a_wrong_current_password_counts_and_changes_nothing_else(client, pg_db):
    alice = signup(client, "Alice")
    before = actions(pg_db, alice.user_id)
    change = {"current_password": "wrong-password-1", "new_password": "a-new-passphrase-42"}
    response = client.post("/v1/me/password", json=change, headers=alice.headers())
    refused(response, 401, "invalid_credentials")
    assert failures(pg_db, alice.email) is None  # the sign-in lockout is not the thief's to use
    session_id = alice.get("/v1/me/sessions").json()["items"][0]["id"]
    counted = {"session_id": session_id, "failures_in_a_row": 1}
    assert actions(pg_db, alice.user_id) == [*before, ("step_up.failed", counted)]
    with db.make_session_factory(pg_db)() as session:
        user = session.get_one(User, alice.user_id)
        assert passwords.verify(user.password_hash, PASSWORD)
        assert user.withdrawals_frozen_until is None
