"""FX over HTTP (R-FX-1, R-TN-2; issue #12 item 6, #11's conversion point): operator rates,
10-second quotes bound to a user, conversions at a quote through the FX accounts as linked legs,
rounding in the operator's favour by less than one minor unit, locks carried pro rata.

Every test ends with ``strongroom ledger check``'s invariants holding (``ledger_checked``)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from fractions import Fraction

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.fx.models import FxConversion, FxQuote, FxRate
from strongroom.identity.models import AuditEvent
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Account
from strongroom.settings import RateLimitRule, RateLimitSettings
from tests.api.conftest import Caller, make_settings, operator, signup
from tests.web.conftest import fingerprint


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == code, error
    return error


def _put_rate(
    who: Caller, base: str, quote: str, mid: object, spread_bps: object
) -> httpx.Response:
    return who.client.put(
        f"/v1/admin/fx/rates/{base}/{quote}",
        json={"mid": mid, "spread_bps": spread_bps},
        headers=who.headers(),
    )


def _money_rows(engine: Engine) -> dict[str, int]:
    """Row counts, less the audit log (every operator call is audited, refused or not)."""
    counts = fingerprint(engine)
    counts.pop("audit_events")
    return counts


def _fx_account(engine: Engine, asset: str) -> tuple[int, int]:
    """(credits posted, debits posted) of the operator's FX account in ``asset``."""
    with db.make_session_factory(engine)() as session:
        row = session.scalars(
            select(Account).filter_by(owner_type="operator", kind="fx", asset=asset)
        ).one()
        return row.credits_posted, row.debits_posted


@pytest.fixture
def finance(client: TestClient, pg_db: Engine) -> Caller:
    return operator(client, pg_db, role="finance")


# --------------------------------------------------------------------------- rates


def test_finance_sets_a_rate_users_see_bid_and_ask_and_the_change_is_audited(
    client: TestClient, pg_db: Engine, finance: Caller
) -> None:
    first = _put_rate(finance, "BTC", "HKD", "500000", 100)
    assert first.status_code == 200, first.text
    assert first.json() | {"updated_at": None} == {
        "base": "BTC",
        "quote": "HKD",
        "mid": "500000",
        "spread_bps": 100,
        "bid": "495000",
        "ask": "505000",
        "updated_at": None,
    }
    changed = _put_rate(finance, "BTC", "HKD", "510000.5", 25)
    assert changed.status_code == 200, changed.text
    user = signup(client, "Reader")
    listed = user.get("/v1/fx/rates")
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert (item["mid"], item["bid"], item["ask"]) == ("510000.5", "508725.49875", "511275.50125")
    with db.make_session_factory(pg_db)() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "fx.rate_set").order_by(AuditEvent.id)
        ).all()
    assert [e.actor_id for e in events] == [finance.user_id, finance.user_id]
    assert '"previous": null' in events[0].details_json
    assert '"previous": {"mid": "500000", "spread_bps": 100}' in events[1].details_json


def test_admin_may_set_rates_other_roles_and_users_may_not(
    client: TestClient, pg_db: Engine
) -> None:
    admin = operator(client, pg_db, role="admin")
    assert _put_rate(admin, "USDT", "HKD", "7.8", 10).status_code == 200
    others = [operator(client, pg_db, role=role) for role in ("support", "kyc_reviewer")]
    eve = signup(client, "Eve")
    before = _money_rows(pg_db)
    for other in others:
        refused = _put_rate(other, "USDT", "HKD", "9", 10)
        assert _error(refused, 403, "forbidden")["details"] == {
            "capability": "fx.rates",
            "roles": ["admin", "finance"],
        }
        gone = other.client.delete("/v1/admin/fx/rates/USDT/HKD", headers=other.headers())
        _error(gone, 403, "forbidden")
    _error(_put_rate(eve, "USDT", "HKD", "9", 10), 403, "forbidden")
    _error(
        eve.client.delete("/v1/admin/fx/rates/USDT/HKD", headers=eve.headers()), 403, "forbidden"
    )
    anonymous = client.put("/v1/admin/fx/rates/USDT/HKD", json={"mid": "9", "spread_bps": 1})
    assert anonymous.status_code == 401
    assert _money_rows(pg_db) == before
    with db.make_session_factory(pg_db)() as session:
        assert session.get_one(FxRate, ("USDT", "HKD")).mid == "7.8"


@pytest.mark.parametrize(
    ("base", "quote", "mid", "spread", "status", "code"),
    [
        ("BTC", "HKD", "0", 10, 422, "invalid_rate"),
        ("BTC", "HKD", "0.000", 10, 422, "invalid_rate"),
        ("BTC", "HKD", "-1", 10, 422, "invalid_rate"),
        ("BTC", "HKD", "1e5", 10, 422, "invalid_rate"),
        ("BTC", "HKD", 500000, 10, 422, "invalid_rate"),
        ("BTC", "HKD", "1." + "1" * 19, 10, 422, "invalid_rate"),
        ("BTC", "HKD", "1" * 13, 10, 422, "invalid_rate"),
        ("BTC", "HKD", "500000", -1, 422, "invalid_spread"),
        ("BTC", "HKD", "500000", 1001, 422, "invalid_spread"),
        ("BTC", "HKD", "500000", "10", 422, "invalid_spread"),
        ("BTC", "HKD", "500000", 1.5, 422, "invalid_spread"),
        ("BTC", "BTC", "1", 10, 422, "same_asset"),
        ("XYZ", "HKD", "1", 10, 422, "unknown_asset"),
        ("BTC", "hkd", "1", 10, 422, "unknown_asset"),
    ],
)
def test_a_bad_rate_is_refused_and_nothing_changes(
    client: TestClient,
    pg_db: Engine,
    finance: Caller,
    base: str,
    quote: str,
    mid: object,
    spread: object,
    status: int,
    code: str,
) -> None:
    before = _money_rows(pg_db)
    _error(_put_rate(finance, base, quote, mid, spread), status, code)
    assert _money_rows(pg_db) == before


def test_the_inverse_pair_is_derived_never_set_twice(
    client: TestClient, pg_db: Engine, finance: Caller
) -> None:
    assert _put_rate(finance, "BTC", "HKD", "500000", 0).status_code == 200
    before = _money_rows(pg_db)
    error = _error(_put_rate(finance, "HKD", "BTC", "0.000002", 0), 409, "inverse_pair_exists")
    assert error["details"] == {"base": "BTC", "quote": "HKD"}
    assert _money_rows(pg_db) == before
    gone = finance.client.delete("/v1/admin/fx/rates/HKD/BTC", headers=finance.headers())
    _error(gone, 404, "rate_not_found")
    deleted = finance.client.delete("/v1/admin/fx/rates/BTC/HKD", headers=finance.headers())
    assert deleted.status_code == 204
    assert _put_rate(finance, "HKD", "BTC", "0.000002", 0).status_code == 200


# --------------------------------------------------------------------------- quotes


def _quote(user: Caller, from_asset: str, to_asset: str, amount: object) -> httpx.Response:
    return user.post(
        "/v1/fx/quotes", {"from_asset": from_asset, "to_asset": to_asset, "amount": amount}, None
    )


def _convert(user: Caller, quote_id: object, key: str | None = "auto") -> httpx.Response:
    return user.post("/v1/conversions", {"quote_id": quote_id}, key)


def test_quote_and_convert_hkd_to_btc_rounds_down_and_the_fx_accounts_show_it(
    client: TestClient, pg_db: Engine, finance: Caller
) -> None:
    assert _put_rate(finance, "BTC", "HKD", "500000", 100).status_code == 200
    alice = signup(client, "Alice")
    alice.topup("1000.00")
    quoted = _quote(alice, "HKD", "BTC", "1000.00")
    assert quoted.status_code == 201, quoted.text
    body = quoted.json()
    # 1000 HKD at the ask (505000 HKD per BTC) is 0.001980198019... BTC: rounded down
    assert (body["from_amount"], body["to_amount"]) == ("1000.00", "0.00198019")
    assert body["rate"].startswith("0.00000198019801980")
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=9) < expires - datetime.now(expires.tzinfo) <= timedelta(seconds=10)
    key = uuid.uuid4().hex
    converted = _convert(alice, body["quote_id"], key)
    assert converted.status_code == 201, converted.text
    assert converted.json()["status"] == "completed"
    assert alice.balance("HKD")["total"] == "0.00"
    assert alice.balance("BTC")["total"] == "0.00198019"
    # the FX accounts: HKD 100000 minor in, BTC 198019 sat out; the exact value was
    # 198019.80... sat, so the operator kept 0.80 sat of rounding (less than one minor unit)
    assert _fx_account(pg_db, "HKD") == (100000, 0)
    assert _fx_account(pg_db, "BTC") == (0, 198019)
    with db.make_session_factory(pg_db)() as session:
        quote = session.get_one(FxQuote, body["quote_id"])
        numerator, denominator = map(int, quote.to_exact.split("/"))
        exact = Fraction(numerator, denominator)
        assert quote.to_minor <= exact < quote.to_minor + 1
        conversion = session.get_one(FxConversion, converted.json()["id"])
        legs = ledger.counterparties(
            session=session, transfer_ids=[conversion.from_transfer_id, conversion.to_transfer_id]
        )
    assert {leg.code for leg in legs.values()} == {"fx"}
    assert len({leg.batch_id for leg in legs.values()}) == 1  # one batch: the linked pair
    # a retry with the same key answers the same conversion and moves nothing
    before = _money_rows(pg_db)
    again = _convert(alice, body["quote_id"], key)
    assert again.status_code == 201 and again.json() == converted.json()
    assert _money_rows(pg_db) == before
    _error(_convert(alice, "q_other", key), 409, "idempotency_key_reused")


def test_btc_to_hkd_sells_at_the_bid(client: TestClient, pg_db: Engine, finance: Caller) -> None:
    assert _put_rate(finance, "BTC", "HKD", "500000", 100).status_code == 200
    bob = signup(client, "Bob")
    bob.topup("0.01", "BTC")
    quoted = _quote(bob, "BTC", "HKD", "0.00123457")
    assert quoted.status_code == 201, quoted.text
    # 0.00123457 x 495000 = 611.11215 HKD: 611.11
    assert quoted.json()["to_amount"] == "611.11"
    assert quoted.json()["rate"] == "495000"
    assert _convert(bob, quoted.json()["quote_id"]).status_code == 201
    assert bob.balance("HKD")["total"] == "611.11"
    assert bob.balance("BTC")["total"] == "0.00876543"


@pytest.mark.parametrize(
    ("from_asset", "to_asset", "amount", "status", "code"),
    [
        ("HKD", "HKD", "1.00", 422, "same_asset"),
        ("HKD", "XYZ", "1.00", 422, "unknown_asset"),
        ("XYZ", "HKD", "1.00", 422, "unknown_asset"),
        (None, "HKD", "1.00", 422, "unknown_asset"),
        ("HKD", "BTC", "0", 422, "invalid_amount"),
        ("HKD", "BTC", "1.001", 422, "invalid_amount"),
        ("HKD", "BTC", "-1", 422, "invalid_amount"),
        ("HKD", "BTC", 5, 422, "invalid_amount"),
        ("HKD", "ETH", "1.00", 422, "rate_unavailable"),
        ("HKD", "PTS", "0.01", 422, "amount_too_small"),
    ],
)
def test_a_bad_quote_is_refused_and_writes_nothing(
    client: TestClient,
    pg_db: Engine,
    finance: Caller,
    from_asset: object,
    to_asset: object,
    amount: object,
    status: int,
    code: str,
) -> None:
    assert _put_rate(finance, "BTC", "HKD", "500000", 100).status_code == 200
    assert _put_rate(finance, "HKD", "PTS", "0.5", 0).status_code == 200
    carol = signup(client, "Carol")
    before = _money_rows(pg_db)
    _error(_quote(carol, from_asset, to_asset, amount), status, code)  # type: ignore[arg-type]
    assert _money_rows(pg_db) == before


def _expire(engine: Engine, quote_id: str) -> None:
    with db.make_session_factory(engine).begin() as session:
        session.execute(
            update(FxQuote)
            .where(FxQuote.id == quote_id)
            .values(expires_at=db.utcnow() - timedelta(milliseconds=1))
        )


def test_stale_used_foreign_unknown_quotes_and_missing_funds_are_refused_nothing_moves(
    client: TestClient, pg_db: Engine, finance: Caller
) -> None:
    assert _put_rate(finance, "BTC", "HKD", "500000", 100).status_code == 200
    dave = signup(client, "Dave")
    dave.topup("100.00")
    mallory = signup(client, "Mallory")
    mallory.topup("100.00")

    stale = _quote(dave, "HKD", "BTC", "10.00").json()["quote_id"]
    _expire(pg_db, stale)
    before = _money_rows(pg_db)
    _error(_convert(dave, stale), 409, "quote_expired")
    _error(
        _convert(mallory, _quote(dave, "HKD", "BTC", "10.00").json()["quote_id"]),
        404,
        "quote_not_found",
    )
    _error(_convert(dave, "q_" + "0" * 32), 404, "quote_not_found")
    _error(_convert(dave, ""), 422, "validation_error")
    _error(_convert(dave, "x" * 65), 422, "validation_error")
    _error(_convert(dave, 12), 422, "validation_error")
    _error(_convert(dave, "q_\x00"), 422, "validation_error")
    _error(_convert(dave, stale, key=None), 422, "idempotency_key_required")
    too_much = _quote(dave, "HKD", "BTC", "100.01").json()["quote_id"]
    error = _error(_convert(dave, too_much), 422, "insufficient_funds")
    assert error["details"]["available_minor"] == "10000"  # type: ignore[index]
    after = _money_rows(pg_db)
    assert after.pop("fx_quotes") == before.pop("fx_quotes") + 2  # the two quotes asked for
    assert after == before
    assert dave.balance("HKD")["total"] == "100.00"
    assert mallory.balance("HKD")["total"] == "100.00"

    used = _quote(dave, "HKD", "BTC", "10.00").json()["quote_id"]
    assert _convert(dave, used).status_code == 201
    before = _money_rows(pg_db)
    _error(_convert(dave, used), 409, "quote_used")
    assert _money_rows(pg_db) == before
    assert dave.balance("HKD")["total"] == "90.00"


def test_an_unverified_user_may_quote_but_not_convert(
    client: TestClient, pg_db: Engine, finance: Caller
) -> None:
    assert _put_rate(finance, "BTC", "HKD", "500000", 100).status_code == 200
    erin = signup(client, "Erin", verify=False)
    quoted = _quote(erin, "HKD", "BTC", "10.00")
    assert quoted.status_code == 201
    _error(_convert(erin, quoted.json()["quote_id"]), 403, "email_unverified")


def test_sixteen_racing_conversions_of_one_quote_convert_once(live_url: str, pg_db: Engine) -> None:
    with httpx.Client(base_url=live_url, timeout=30) as http:
        finance = operator(http, pg_db, role="finance")
        assert _put_rate(finance, "BTC", "HKD", "500000", 100).status_code == 200
        frank = signup(http, "Frank", engine=pg_db)
        frank.topup("100.00")
        quote_id = _quote(frank, "HKD", "BTC", "60.00").json()["quote_id"]
    answers: list[httpx.Response] = []
    start = threading.Barrier(16)

    def race() -> None:
        with httpx.Client(base_url=live_url, timeout=30) as own:
            start.wait()
            answers.append(
                own.post(
                    "/v1/conversions",
                    json={"quote_id": quote_id},
                    headers={**frank.headers(uuid.uuid4().hex)},
                )
            )

    threads = [threading.Thread(target=race) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] + [409] * 15, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"quote_used"}
    with db.make_session_factory(pg_db)() as session:
        assert session.scalar(select(FxConversion.id).where(FxConversion.quote_id == quote_id))
    with httpx.Client(base_url=live_url, timeout=30) as http:
        frank.client = http
        assert frank.balance("HKD")["total"] == "40.00"


# --------------------------------------------------------------------------- T+N


def test_converting_locked_usdt_to_btc_locks_the_btc_pro_rata_until_the_same_times(
    client: TestClient, pg_db: Engine, finance: Caller
) -> None:
    assert _put_rate(finance, "BTC", "USDT", "50000", 0).status_code == 200
    grace = signup(client, "Grace")
    now = db.utcnow().replace(microsecond=0)
    soon, later = now + timedelta(hours=24), now + timedelta(hours=72)
    factory = db.make_session_factory(pg_db)
    with db.unit_of_work(factory) as session:  # 1000 USDT, two fiat-purchase lots (T+N) of it
        wallet = ledger.user_wallet_id(session=session, user_id=grace.user_id, asset="USDT")
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="USDT").id
        ledger.transfer(  # not a sandbox top-up: that is a purchase, all of it locked
            session=session,
            spec=TransferSpec(
                debit_account_id=bank,
                credit_account_id=wallet,
                asset="USDT",
                amount_minor=1_000_000_000,
            ),
        )
        ledger.lock(session=session, account_id=wallet, amount_minor=300_000_000, unlocks_at=soon)
        ledger.lock(session=session, account_id=wallet, amount_minor=500_000_000, unlocks_at=later)
    assert grace.balance("USDT")["available"] == "200.000000"
    quoted = _quote(grace, "USDT", "BTC", "600")
    assert quoted.json()["to_amount"] == "0.01200000"
    assert _convert(grace, quoted.json()["quote_id"]).status_code == 201
    # 600 USDT spent: the 200 free first, then 300 of the lot unlocking soonest, 100 of the next
    usdt, btc = grace.balance("USDT"), grace.balance("BTC")
    assert (usdt["total"], usdt["locked"], usdt["available"]) == (
        "400.000000",
        "400.000000",
        "0.000000",
    )
    unlocks: list[dict[str, str]] = usdt["unlocks"]  # type: ignore[assignment]
    assert [(u["amount"], datetime.fromisoformat(u["at"])) for u in unlocks] == [
        ("400.000000", later)
    ]
    # the BTC bought with locked USDT: 300/600 and 100/600 of 0.012 BTC, until the same times
    assert (btc["total"], btc["locked"], btc["available"]) == (
        "0.01200000",
        "0.00800000",
        "0.00400000",
    )
    with factory() as session:
        target = ledger.user_wallet_id_if_any(session=session, user_id=grace.user_id, asset="BTC")
        assert target is not None
        held = ledger.balance(session=session, account_id=target)
        assert [(u.amount_minor, u.at) for u in held.unlocks] == [(600_000, soon), (200_000, later)]
        assert ledger.balance(session=session, account_id=target, now=soon).locked_minor == 200_000
        free = ledger.balance(session=session, account_id=target, now=later)
        assert (free.locked_minor, free.available_minor) == (0, 1_200_000)
        conversion = session.scalars(select(FxConversion)).one()
        assert conversion.locked_carried_minor == 800_000


def test_quotes_are_rate_limited_per_account(pg_db: Engine) -> None:
    settings = make_settings(pg_db)
    rules = RateLimitSettings(
        enabled=True, fx_quotes_per_account=RateLimitRule(limit=3, window_s=60)
    )
    settings = settings.model_copy(update={"rate_limits": rules, "rate_limits_enabled": None})
    with TestClient(create_app(settings, pg_db)) as limited:
        finance = operator(limited, pg_db, role="finance")
        assert _put_rate(finance, "BTC", "HKD", "500000", 100).status_code == 200
        kim, lee = signup(limited, "Kim"), signup(limited, "Lee")
        for _ in range(3):
            assert _quote(kim, "HKD", "BTC", "10.00").status_code == 201
        refused = _error(_quote(kim, "HKD", "BTC", "10.00"), 429, "rate_limited")
        assert refused["details"]["rule"] == "fx_quotes_per_account"  # type: ignore[index]
        assert _quote(lee, "HKD", "BTC", "10.00").status_code == 201  # per account
    with db.make_session_factory(pg_db)() as session:
        assert len(session.scalars(select(FxQuote)).all()) == 4
