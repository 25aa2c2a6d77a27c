"""FX conversions under the limits engine (issue #11: operation ``conversion``), and the limits
engine valuing amounts at the operator's mid rates (settings ``limits.prices`` as the fallback):
SPEC's tier table, over HTTP on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.errors import DomainError
from strongroom.fx.models import FxConversion
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Transfer
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.settings import LimitsSettings, Settings

from .conftest import Caller, make_settings, operator, signup


def _settings(engine: Engine) -> Settings:
    return make_settings(engine).model_copy(update={"limits": LimitsSettings()})


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    """The API with SPEC's tier table (unverified: 2,000 HKD a transaction, 3,000 a day)."""
    return create_app(_settings(pg_db), pg_db)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _rate(finance: Caller, base: str, quote: str, mid: str) -> None:
    response = finance.client.put(
        f"/v1/admin/fx/rates/{base}/{quote}",
        json={"mid": mid, "spread_bps": 0},
        headers=finance.headers(),
    )
    assert response.status_code == 200, response.text


def _fund(engine: Engine, user_id: str, asset: str, amount_minor: int) -> None:
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


def _quote(user: Caller, amount: str) -> str:
    quoted = user.post(
        "/v1/fx/quotes", {"from_asset": "BTC", "to_asset": "HKD", "amount": amount}, None
    )
    assert quoted.status_code == 201, quoted.text
    return str(quoted.json()["quote_id"])


def _convert(user: Caller, amount: str) -> httpx.Response:
    return user.post("/v1/conversions", {"quote_id": _quote(user, amount)})


def _rows(engine: Engine) -> tuple[int, int]:
    with db.make_session_factory(engine)() as session:
        return (
            session.scalar(select(func.count()).select_from(Transfer)) or 0,
            session.scalar(select(func.count()).select_from(FxConversion)) or 0,
        )


def test_conversions_count_against_the_tier_at_the_operators_rate(
    client: TestClient, pg_db: Engine
) -> None:
    finance = operator(client, pg_db, role="finance")
    _rate(finance, "BTC", "HKD", "400000")  # the settings say 800,000
    alice = signup(client, "Alice")
    _fund(pg_db, alice.user_id, "BTC", 2_000_000)  # 0.02 BTC, not a purchase
    # 0.004 BTC is HK$1,600 at the operator's rate (HK$3,200 at the settings': over 2,000)
    first = _convert(alice, "0.004")
    assert first.status_code == 201, first.text
    before = _rows(pg_db)
    second = _convert(alice, "0.004")  # 1,600 + 1,600 > 3,000 a day
    assert second.status_code == 422, second.text
    error = second.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert {k: error["details"][k] for k in ("limit", "limit_amount", "left")} == {
        "limit": "day",
        "limit_amount": "3000.00",
        "left": "1400.00",
    }
    assert _rows(pg_db) == before
    assert _convert(alice, "0.0035").status_code == 201  # HK$1,400: exactly what is left

    # the rate moves: the same 0.004 BTC is now HK$2,400, over the per-transaction limit
    _rate(finance, "BTC", "HKD", "600000")
    bob = signup(client, "Bob")
    _fund(pg_db, bob.user_id, "BTC", 1_000_000)
    refused = _convert(bob, "0.004")
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"]["limit"] == "per_transaction"
    assert _convert(bob, "0.003").status_code == 201  # HK$1,800


def test_a_btc_equivalent_limit_follows_the_operators_rate(
    client: TestClient, pg_db: Engine
) -> None:
    """Crypto withdrawals (primary: 80 BTC-equivalent in 24 h) at service level: no endpoint yet."""
    finance = operator(client, pg_db, role="finance")
    fay = signup(client, "Fay")
    settings = _settings(pg_db)
    eth = settings.asset_registry().money("2000", "ETH")
    factory = db.make_session_factory(pg_db)

    def check() -> None:
        with db.unit_of_work(factory) as session:
            user = session.get_one(User, fay.user_id)
            user.kyc_tier = "primary"
            limits.check(
                session=session,
                user=user,
                operation=Operation.CRYPTO_WITHDRAWAL,
                amount=eth,
                settings=settings,
            )

    check()  # no rate: the settings' 0.035 BTC per ETH, 70 BTC
    _rate(finance, "BTC", "ETH", "20")  # 1 ETH = 0.05 BTC: 100 BTC
    with pytest.raises(DomainError) as refused:
        check()
    assert refused.value.code == "limit_exceeded"
    assert refused.value.details["limit"] == "crypto_withdrawals_24h"
    assert refused.value.details["left"] == "80.00000000"
    _rate(finance, "BTC", "ETH", "40")  # 1 ETH = 0.025 BTC: 50 BTC
    check()


def test_racing_conversions_never_exceed_the_day_limit(live_url: str, pg_db: Engine) -> None:
    with httpx.Client(base_url=live_url, timeout=60) as http:
        finance = operator(http, pg_db, role="finance")
        _rate(finance, "BTC", "HKD", "400000")
        carol = signup(http, "Carol", engine=pg_db)
        _fund(pg_db, carol.user_id, "BTC", 10_000_000)
        quotes = [_quote(carol, "0.0025") for _ in range(8)]  # HK$1,000 each; 3,000 a day
    answers: list[httpx.Response] = []
    start = threading.Barrier(len(quotes))

    def race(quote_id: str) -> None:
        with httpx.Client(base_url=live_url, timeout=60) as own:
            start.wait()
            answers.append(
                own.post(
                    "/v1/conversions",
                    json={"quote_id": quote_id},
                    headers=carol.headers(uuid.uuid4().hex),
                )
            )

    threads = [threading.Thread(target=race, args=(q,)) for q in quotes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 3 + [422] * 5, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 422} == {
        "limit_exceeded"
    }
