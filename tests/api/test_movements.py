"""The money-movement service (issue #9): one path for every money-moving request, a refused
transfer writes nothing at all, and idempotency keys expire after their retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

import strongroom.models  # noqa: F401  (every table in Base.metadata)
from strongroom import db, worker
from strongroom.errors import InvariantViolation
from strongroom.movements import idempotency
from strongroom.movements.models import IdempotencyKey
from strongroom.settings import IdempotencySettings
from tests.api.conftest import signup
from tests.web.conftest import fingerprint


def test_a_refused_transfer_leaves_every_table_as_it_was(client: TestClient, pg_db: Engine):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("10.00")
    before = fingerprint(pg_db)
    too_much = alice.post("/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "50.00"})
    assert too_much.status_code == 422 and too_much.json()["error"]["code"] == "insufficient_funds"
    assert too_much.json()["error"]["details"]["available_minor"] == "1000"
    # no wallet held in that asset at all, and a recipient with none either: still nothing
    no_wallet = alice.post("/v1/transfers", {"to": bob.email, "asset": "USD", "amount": "1.00"})
    assert (
        no_wallet.status_code == 422 and no_wallet.json()["error"]["code"] == "insufficient_funds"
    )
    nobody = alice.post(
        "/v1/transfers", {"to": "nobody@example.com", "asset": "HKD", "amount": "1"}
    )
    assert nobody.status_code == 404
    assert fingerprint(pg_db) == before
    assert bob.balance()["total"] is None  # Bob still has no HKD wallet


def test_a_refused_key_can_be_retried_and_a_success_is_replayed(client: TestClient):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    body = {"to": bob.email, "asset": "HKD", "amount": "5.00"}
    assert alice.post("/v1/transfers", body, key="k-1").status_code == 422
    alice.topup("5.00")
    first = alice.post("/v1/transfers", body, key="k-1")
    again = alice.post("/v1/transfers", body, key="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["status"] == "completed"
    assert bob.balance()["total"] == "5.00"


def test_keys_expire_after_the_retention_in_bounded_batches(client: TestClient, pg_db: Engine):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("10.00")
    for index in range(5):
        sent = alice.post(
            "/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "1"}, key=f"old-{index}"
        )
        assert sent.status_code == 201
    factory = db.make_session_factory(pg_db)
    with db.unit_of_work(factory) as session:  # five keys from eight days ago, the rest fresh
        session.execute(
            IdempotencyKey.__table__.update()
            .where(IdempotencyKey.key.like("old-%"))
            .values(created_at=db.utcnow() - timedelta(days=8))
        )
    keys = IdempotencySettings(retention_hours=24 * 7, expire_batch_max=2)
    swept = [worker.sweep_once(factory, keys).keys_expired for _ in range(4)]
    assert swept == [2, 2, 1, 0]
    with factory() as session:
        left = set(session.scalars(select(IdempotencyKey.key)))
        assert not any(key.startswith("old-") for key in left)
        assert len(left) == 1  # the top-up's key is within the retention
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 1
    # an expired key is free again: the same key moves money anew (a new transfer)
    again = alice.post(
        "/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "1"}, key="old-0"
    )
    assert again.status_code == 201
    assert bob.balance()["total"] == "6.00"


def test_expire_refuses_an_unbounded_batch(pg_db: Engine):
    with db.make_session_factory(pg_db)() as session, pytest.raises(InvariantViolation):
        idempotency.expire(session=session, retention_hours=1, limit=10**9)
