"""Spent locked money consumes its lots, over HTTP (R-TN-2, issue #11): crypto bought through
the (fiat) sandbox channel is locked; converting it consumes its lots and carries them to what
was received; BTC received later by P2P is free at once (no over-locking)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.fx.models import FxConversion
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Lock, LockUse
from strongroom.settings import LimitsSettings

from .conftest import Caller, make_settings, operator, signup


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    """The API with SPEC's tier table and T+N holds (the other API tests run without limits)."""
    settings = make_settings(pg_db).model_copy(update={"limits": LimitsSettings()})
    return create_app(settings, pg_db)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _set_tier(engine: Engine, user_id: str, tier: str) -> None:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.execute(update(User).where(User.id == user_id).values(kyc_tier=tier))


def _fund_free(engine: Engine, user_id: str, asset: str, amount_minor: int) -> None:
    """Money that is not a purchase (no lot), as a crypto deposit would credit it."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=asset).id
        wallet = ledger.user_wallet_id(session=session, user_id=user_id, asset=asset)
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=bank,
                credit_account_id=wallet,
                asset=asset,
                amount_minor=amount_minor,
            ),
        )


def _convert(user: Caller, from_asset: str, to_asset: str, amount: str) -> str:
    quoted = user.post(
        "/v1/fx/quotes", {"from_asset": from_asset, "to_asset": to_asset, "amount": amount}, None
    )
    assert quoted.status_code == 201, quoted.text
    converted = user.post("/v1/conversions", {"quote_id": quoted.json()["quote_id"]})
    assert converted.status_code == 201, converted.text
    return str(converted.json()["id"])


def test_converting_bought_btc_consumes_its_lots_and_btc_received_later_is_free(
    client: TestClient, pg_db: Engine
) -> None:
    finance = operator(client, pg_db, role="finance")
    rate = finance.client.put(
        "/v1/admin/fx/rates/BTC/HKD",
        json={"mid": "800000", "spread_bps": 0},
        headers=finance.headers(),
    )
    assert rate.status_code == 200, rate.text
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    _set_tier(pg_db, alice.user_id, "primary")
    alice.topup("0.002", "BTC")  # a purchase through a fiat channel: locked (T+N)
    bought = alice.balance("BTC")
    assert (bought["total"], bought["locked"]) == ("0.00200000", "0.00200000")
    at = datetime.fromisoformat(bought["unlocks"][0]["at"])  # type: ignore[index]

    conversion_id = _convert(alice, "BTC", "HKD", "0.001")
    btc, hkd = alice.balance("BTC"), alice.balance("HKD")
    assert (btc["total"], btc["locked"], btc["available"]) == (
        "0.00100000",
        "0.00100000",
        "0.00000000",
    )
    assert (hkd["total"], hkd["locked"], hkd["available"]) == ("800.00", "800.00", "0.00")
    unlocks: list[dict[str, str]] = hkd["unlocks"]  # type: ignore[assignment]
    assert [datetime.fromisoformat(u["at"]) for u in unlocks] == [at]
    with db.make_session_factory(pg_db)() as session:
        conversion = session.get_one(FxConversion, conversion_id)
        used = (
            session.execute(
                select(LockUse.amount_minor).where(
                    LockUse.transfer_id == conversion.from_transfer_id
                )
            )
            .scalars()
            .all()
        )
        assert used == [100_000]  # the debit consumed 0.001 BTC of the lot
        lot = session.scalars(
            select(Lock).where(Lock.transfer_id != conversion.to_transfer_id, Lock.asset == "BTC")
        ).one()
        assert (lot.amount_minor, lot.consumed_minor) == (200_000, 100_000)
        assert conversion.locked_carried_minor == 80_000

    _fund_free(pg_db, bob.user_id, "BTC", 100_000)
    sent = bob.post("/v1/transfers", {"to": alice.email, "asset": "BTC", "amount": "0.0005"})
    assert sent.status_code == 201, sent.text
    btc = alice.balance("BTC")  # the P2P credit is free at once: the spent lot is not reused
    assert (btc["total"], btc["locked"], btc["available"]) == (
        "0.00150000",
        "0.00100000",
        "0.00050000",
    )
    refused = alice.post("/v1/transfers", {"to": bob.email, "asset": "BTC", "amount": "0.0006"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "funds_locked"
    sent_back = alice.post("/v1/transfers", {"to": bob.email, "asset": "BTC", "amount": "0.0005"})
    assert sent_back.status_code == 201, sent_back.text
