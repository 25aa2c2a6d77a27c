"""Finding 1 of issue #10, free money: the ``sandbox`` top-up channel confirms at once, so any
registered user could mint any amount and push the omnibus account toward its column's limit.

Now the channel exists only in demo, development and test (R-SEC-11): in production
``POST /v1/topups`` with it is ``unknown_channel`` and writes nothing. Where it exists, each
top-up is capped (``funding.sandbox_max_topup``, about HK$50,000), so not even the demo can
overflow a column."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from tests.api.conftest import production_settings, signup
from tests.web.conftest import fingerprint

OVERFLOW = "9" * 36 + ".99"
"""Close to the ledger's 39-digit column in HKD minor units: what the attack sent."""


@pytest.fixture
def production_client(pg_db: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(production_settings(pg_db), pg_db)) as client:
        yield client


def _error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == code
    return error


@pytest.mark.parametrize("amount", ["1.00", OVERFLOW])
def test_production_has_no_sandbox_and_a_sandbox_topup_writes_nothing(
    production_client: TestClient, pg_db: Engine, amount: str
) -> None:
    attacker = signup(production_client, "Mallory")
    before = fingerprint(pg_db)
    refused = attacker.post("/v1/topups", {"asset": "HKD", "amount": amount, "channel": "sandbox"})
    error = _error(refused, 422, "unknown_channel")
    assert error["details"] == {"channels": []}  # the channels that exist: none yet
    assert fingerprint(pg_db) == before
    assert attacker.balance("HKD")["total"] is None


def test_the_openapi_document_lists_the_topup_refusals(production_client: TestClient) -> None:
    responses = production_client.get("/openapi.json").json()["paths"]["/v1/topups"]["post"]
    assert {"201", "401", "409", "422"} <= set(responses["responses"])
    assert "unknown_channel" in responses["responses"]["422"]["description"]


@pytest.mark.parametrize(
    ("asset", "amount", "cap"),
    [
        ("HKD", "50000.01", "50000.00"),
        ("HKD", OVERFLOW, "50000.00"),
        ("BTC", "0.07000001", "0.07000000"),
    ],
)
def test_a_sandbox_topup_over_its_cap_is_refused_with_the_limit_and_writes_nothing(
    client: TestClient, pg_db: Engine, asset: str, amount: str, cap: str
) -> None:
    attacker = signup(client, "Mallory")
    before = fingerprint(pg_db)
    refused = attacker.post("/v1/topups", {"asset": asset, "amount": amount, "channel": "sandbox"})
    error = _error(refused, 422, "limit_exceeded")
    assert error["details"] == {
        "limit": "sandbox_topup",
        "asset": asset,
        "limit_amount": cap,
        "left": cap,
        "frees_at": None,
    }
    assert fingerprint(pg_db) == before


def test_a_sandbox_topup_up_to_its_cap_still_works(client: TestClient) -> None:
    alice = signup(client, "Alice")
    alice.topup("50000.00")
    alice.topup("0.07", "BTC")
    assert alice.balance("HKD")["total"] == "50000.00"
    assert alice.balance("BTC")["total"] == "0.07000000"
    unknown = alice.post("/v1/topups", {"asset": "HKD", "amount": "1.00", "channel": "fps"})
    assert _error(unknown, 422, "unknown_channel")["details"] == {"channels": ["sandbox"]}
