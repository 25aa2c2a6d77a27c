"""KYC approval sets the verified identity other packages read (issue #11): the legal name
(banking's same-name rule for linked bank accounts) and the nationality = the document's country
(the limits' high-risk nationality list → 72-hour T+N holds), over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity.models import User
from strongroom.settings import KycSettings, LimitsSettings
from tests.api.conftest import PASSWORD, Caller, make_settings, operator, signup
from tests.api.kyc_support import PRIMARY_FIELDS, submit


@pytest.fixture
def app(pg_db: Engine, tmp_path: Path) -> FastAPI:
    settings = make_settings(pg_db).model_copy(
        update={
            "kyc": KycSettings(documents_dir=str(tmp_path / "kyc-documents")),
            "limits": LimitsSettings(tn_high_risk_nationalities=["KP"]),
        }
    )
    return create_app(settings, pg_db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _approved(client: TestClient, pg_db: Engine, name: str, **fields: str) -> Caller:
    user = signup(client, name)
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    submitted = submit(user, PRIMARY_FIELDS | fields)
    assert submitted.status_code == 201, submitted.text
    approved = reviewer.post(
        f"/v1/admin/kyc/submissions/{submitted.json()['id']}/approve", {}, key=None
    )
    assert approved.status_code == 200, approved.text
    return user


def _link(caller: Caller, holder_name: str, number: str) -> httpx.Response:
    body = {
        "holder_name": holder_name,
        "bank_code": "004",
        "account_number": number,
        "password": PASSWORD,
    }
    return caller.client.post("/v1/bank-accounts", json=body, headers=caller.headers())


def _user(engine: Engine, user_id: str) -> User:
    with db.make_session_factory(engine)() as session:
        return session.get_one(User, user_id)


def _hold(caller: Caller) -> timedelta:
    caller.topup("0.001", "BTC")  # a purchase through a fiat channel: T+N
    rows = {row["asset"]: row for row in caller.get("/v1/balances").json()["balances"]}
    (unlock,) = rows["BTC"]["unlocks"]
    at = datetime.fromisoformat(unlock["at"])
    return at - datetime.now(at.tzinfo)


def test_approving_primary_sets_the_legal_name_a_bank_account_must_carry(
    client: TestClient, pg_db: Engine
) -> None:
    user = signup(client, "Before")
    refused = _link(user, "Chan Tai Man", "123456789")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "kyc_required"

    alice = _approved(client, pg_db, "Alice")  # legal name "Chan Tai Man", an HK document
    row = _user(pg_db, alice.user_id)
    assert (row.kyc_tier, row.legal_name, row.nationality) == ("primary", "Chan Tai Man", "HK")
    linked = _link(alice, "Tai Man Chan", "123456789")  # the same name, in another order
    assert linked.status_code == 201, linked.text
    other = _link(alice, "Chan Tai", "223456789")
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "holder_name_mismatch"
    assert len(alice.get("/v1/bank-accounts").json()["items"]) == 1


def test_a_high_risk_nationality_from_the_document_gets_72_hour_holds(
    client: TestClient, pg_db: Engine
) -> None:
    kim = _approved(client, pg_db, "Kim", document_country="KP", legal_name="Kim Chol")
    assert _user(pg_db, kim.user_id).nationality == "KP"
    assert timedelta(hours=71, minutes=59) < _hold(kim) <= timedelta(hours=72)
    chan = _approved(client, pg_db, "Chan")
    assert _user(pg_db, chan.user_id).nationality == "HK"
    assert timedelta(hours=23, minutes=59) < _hold(chan) <= timedelta(hours=24)
