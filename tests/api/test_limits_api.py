"""``GET /v1/limits`` (SPEC §13 wave 2) and the limits through ``POST /v1/topups`` and
``POST /v1/transfers``: the refusals' ``details`` reach the client, nothing is written, and a
crypto purchase through the (fiat) sandbox channel shows as locked in ``GET /v1/balances``."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity.models import User
from strongroom.ledger.models import Transfer
from strongroom.settings import LimitsSettings

from .conftest import make_settings, signup


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    """The API with SPEC's tier table (the other API tests run without limits)."""
    settings = make_settings(pg_db).model_copy(update={"limits": LimitsSettings()})
    return create_app(settings, pg_db)


def _transfers(engine: Engine) -> int:
    with db.make_session_factory(engine)() as session:
        return int(session.scalar(select(func.count()).select_from(Transfer)) or 0)


def _set_tier(engine: Engine, user_id: str, tier: str) -> None:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.execute(update(User).where(User.id == user_id).values(kyc_tier=tier))


def test_limits_show_the_tier_and_what_is_left(client: TestClient, pg_db: Engine) -> None:
    alice = signup(client, "Alice")
    alice.topup("1000.00")
    bob = signup(client, "Bob")
    assert (
        alice.post(
            "/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "250.00"}
        ).status_code
        == 201
    )
    body = alice.get("/v1/limits").json()
    assert body["tier"] == "unverified"
    rows = {row["operation"]: row for row in body["limits"]}
    assert list(rows) == [
        "topup",
        "p2p_send",
        "merchant_payment",
        "fiat_withdrawal",
        "crypto_withdrawal",
        "gift",
        "conversion",
    ]
    shape = {"operation", "per_transaction", "day_left", "year_left", "count_left"}
    assert all(shape <= set(row) for row in body["limits"])
    assert (rows["p2p_send"]["per_transaction"], rows["p2p_send"]["day_left"]) == (
        "2000.00",
        "2750.00",
    )
    assert (rows["p2p_send"]["year_left"], rows["p2p_send"]["count_left"]) == ("24750.00", None)
    assert (rows["topup"]["day_left"], rows["topup"]["balance_left"]) == ("2000.00", "2250.00")
    assert rows["fiat_withdrawal"]["required_tier"] == "primary"
    assert rows["fiat_withdrawal"]["count_left"] == 0
    assert rows["crypto_withdrawal"]["currency"] == "BTC"
    assert rows["crypto_withdrawal"]["per_transaction"] is None
    _set_tier(pg_db, alice.user_id, "institutional")
    rows = {row["operation"]: row for row in alice.get("/v1/limits").json()["limits"]}
    assert rows["gift"]["year_left"] is None  # institutional: no yearly limit
    assert rows["fiat_withdrawal"]["count_left"] == 50
    assert rows["crypto_withdrawal"]["day_left"] == "400.00000000"
    assert client.get("/v1/limits").status_code == 401


def test_a_transfer_over_the_day_limit_is_refused_with_details(
    client: TestClient, pg_db: Engine
) -> None:
    alice = signup(client, "Alice")
    bob = signup(client, "Bob")
    alice.topup("2000.00")
    alice.topup("1000.00")
    for amount in ("2000.00", "900.00"):
        sent = alice.post("/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": amount})
        assert sent.status_code == 201, sent.text
    carol = signup(client, "Carol")
    carol.topup("1000.00")  # what a user receives is not limited
    assert (
        carol.post(
            "/v1/transfers", {"to": alice.email, "asset": "HKD", "amount": "1000.00"}
        ).status_code
        == 201
    )
    before = _transfers(pg_db)
    refused = alice.post("/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "100.01"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert set(error["details"]) == {"limit", "limit_amount", "left", "frees_at"}
    assert (error["details"]["limit"], error["details"]["left"]) == ("day", "100.00")
    frees = datetime.fromisoformat(error["details"]["frees_at"])
    assert timedelta(hours=23) < frees - datetime.now(frees.tzinfo) <= timedelta(hours=24)
    assert _transfers(pg_db) == before


def test_a_top_up_over_the_tier_limits_is_refused_and_writes_nothing(
    client: TestClient, pg_db: Engine
) -> None:
    alice = signup(client, "Alice")
    before = _transfers(pg_db)
    refused = alice.post("/v1/topups", {"asset": "HKD", "amount": "2000.01", "channel": "sandbox"})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {
        "limit": "per_transaction",
        "limit_amount": "2000.00",
        "left": "2000.00",
        "frees_at": None,
    }
    assert _transfers(pg_db) == before
    assert alice.get("/v1/balances").json()["balances"] == []  # no wallet opened


def test_crypto_bought_through_the_sandbox_is_locked_and_cannot_be_sent(
    client: TestClient, pg_db: Engine
) -> None:
    alice = signup(client, "Alice")
    bob = signup(client, "Bob")
    alice.topup("100.000000", "USDT")
    row = alice.balance("USDT")
    assert (row["total"], row["locked"], row["available"]) == (
        "100.000000",
        "100.000000",
        "0.000000",
    )
    (unlock,) = row["unlocks"]  # type: ignore[misc]
    at = datetime.fromisoformat(unlock["at"])
    assert unlock["amount"] == "100.000000"
    assert timedelta(hours=23, minutes=59) < at - datetime.now(at.tzinfo) <= timedelta(hours=24)
    before = _transfers(pg_db)
    refused = alice.post("/v1/transfers", {"to": bob.email, "asset": "USDT", "amount": "1.000000"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "funds_locked"
    details = error["details"]
    assert (details["asset"], details["locked"]) == ("USDT", "100.000000")
    assert datetime.fromisoformat(details["unlocks_at"]) == at
    assert _transfers(pg_db) == before
