"""Merchants, charges and refunds over HTTP (issue #13 items 4, 5, 6-refunds; R-MERCH-1..3,
R-XB-1, R-CODE-2): the worked example (HK$100 at 80 bps), partial refunds with the fee back
pro rata, cross-border legs through the FX accounts, a code accepted once (and given back when
the charge is refused), the merchant roles, one merchant's key cannot see another's charges,
bad input refused with nothing moved. Every test ends with the ledger's invariants holding."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.emv import Field, decode, encode
from strongroom.ledger import reports
from strongroom.merchants.models import Charge
from strongroom.notify.models import OutboxEmail
from strongroom.paycodes import domain as paycode_domain
from tests.api.conftest import operator, signup
from tests.api.merchant_support import (
    code_of,
    fee_balance,
    merchant_balance,
    money_rows,
    onboard,
    owned_balance,
    terminal,
)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def test_the_worked_example_and_a_partial_refund(client, pg_db):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("150.00")
    charged = till.charge({"payment_code": code_of(alice), "amount": "100.00", "asset": "HKD"})
    assert charged.status_code == 201, charged.text
    charge = charged.json()
    assert charge["status"] == "completed" and charge["id"].startswith("ch_")
    assert alice.balance()["total"] == "50.00"
    assert merchant_balance(pg_db, merchant_id) == 9920
    assert fee_balance(pg_db) == 80
    with pg_db.connect() as connection:
        receipt = connection.execute(
            select(OutboxEmail.subject).where(
                OutboxEmail.template_id == "merchants.payment_receipt"
            )
        ).scalar_one()
    assert "HKD 100.00" in receipt and "Lucky Tea House" in receipt

    refunded = till.refund(charge["id"], "40.00")
    assert refunded.status_code == 201, refunded.text
    assert refunded.json()["id"].startswith("rf_")
    assert alice.balance()["total"] == "90.00"
    assert merchant_balance(pg_db, merchant_id) == 9920 - 3968
    assert fee_balance(pg_db) == 80 - 32
    read = till.get(f"/v1/merchant/charges/{charge['id']}").json()
    assert (read["status"], read["refunded"], read["fee"], read["net"]) == (
        "partially_refunded",
        "40.00",
        "0.80",
        "99.20",
    )
    # never more than what is left; the rest refunds exactly the rest of the fee
    _error(till.refund(charge["id"], "60.01"), 422, "refund_exceeds_charge")
    assert till.refund(charge["id"], "60.00").status_code == 201
    assert alice.balance()["total"] == "150.00"
    assert merchant_balance(pg_db, merchant_id) == 0 and fee_balance(pg_db) == 0
    _error(till.refund(charge["id"], "0.01"), 422, "refund_exceeds_charge")
    assert till.get(f"/v1/merchant/charges/{charge['id']}").json()["status"] == "refunded"


def test_an_idempotent_charge_and_a_code_accepted_once(client, pg_db):
    admin = operator(client, pg_db)
    till = terminal(admin, onboard(admin))
    alice = signup(client, "Alice")
    alice.topup("100.00")
    code = code_of(alice)
    body = {"payment_code": code, "amount": "10.00", "asset": "HKD"}
    first = till.charge(body, idempotency="k1")
    again = till.charge(body, idempotency="k1")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    _error(till.charge(body), 409, "payment_code_used")
    assert alice.balance()["total"] == "90.00"

    # a refused charge gives its code back: the same code pays once the money is there
    bob = signup(client, "Bob")
    bobs = code_of(bob)
    _error(
        till.charge({"payment_code": bobs, "amount": "5.00", "asset": "HKD"}),
        422,
        "insufficient_funds",
    )
    bob.topup("5.00")
    assert till.charge({"payment_code": bobs, "amount": "5.00", "asset": "HKD"}).status_code == 201


def test_an_expired_code_is_refused_with_when_it_expired(client, pg_db):
    admin = operator(client, pg_db)
    till = terminal(admin, onboard(admin))
    alice = signup(client, "Alice")
    alice.topup("10.00")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    old_step = int(time.time()) // device["step_s"] - 3
    old = paycode_domain.code(
        issuer_id=device["issuer_id"],
        locator=int(device["locator"]),
        secret=paycode_domain.secret_bytes(device["secret"]),
        step=old_step,
    )
    before = money_rows(pg_db)
    refused = till.charge({"payment_code": old, "amount": "1.00", "asset": "HKD"})
    error = _error(refused, 422, "payment_code_expired")
    assert isinstance(error["details"]["expired_at"], str)
    assert money_rows(pg_db) == before


def test_a_virtual_card_pays_and_the_merchant_sees_its_last_four_only(client, pg_db):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    other_id = onboard(admin, name="Other Shop")
    till, other = terminal(admin, merchant_id), terminal(admin, other_id)
    alice = signup(client, "Alice")
    alice.topup("50.00")
    card = alice.post("/v1/tokens", {"merchant_id": merchant_id}, key=None).json()
    paid = till.charge({"token": card["number"], "amount": "20.00", "asset": "HKD"})
    assert paid.status_code == 201, paid.text
    shown = till.get(f"/v1/merchant/charges/{paid.json()['id']}").json()
    assert shown["token_last4"] == card["last4"] and card["number"] not in str(shown)
    _error(
        other.charge({"token": card["number"], "amount": "1.00", "asset": "HKD"}),
        422,
        "token_merchant_mismatch",
    )
    client.post(f"/v1/tokens/{card['id']}/suspend", headers=alice.headers())
    suspended = till.charge({"token": card["number"], "amount": "1.00", "asset": "HKD"})
    if suspended.status_code != 201:  # the suspend route exists: refused
        _error(suspended, 422, "token_suspended")


def test_cross_border_pays_in_the_payer_s_currency_at_the_live_rate(client, pg_db):
    admin = operator(client, pg_db)
    set_rate = client.put(
        "/v1/admin/fx/rates/HKD/CNY",
        json={"mid": "0.9", "spread_bps": 0},
        headers=admin.headers(),
    )
    assert set_rate.status_code == 200, set_rate.text
    cn_id = onboard(admin, region="CN", name="Shenzhen Noodles")
    till = terminal(admin, cn_id)
    alice = signup(client, "Alice")  # HK: pays in HKD
    alice.topup("200.00")
    _error(
        till.charge({"payment_code": code_of(alice), "amount": "90.00", "asset": "HKD"}),
        422,
        "asset_not_accepted",
    )
    paid = till.charge({"payment_code": code_of(alice), "amount": "90.00", "asset": "CNY"})
    assert paid.status_code == 201, paid.text
    # CNY 90.00 at 0.9 CNY per HKD: HKD 100.00 leaves Alice; the merchant gets 90.00 - 0.72
    assert alice.balance()["total"] == "100.00"
    assert merchant_balance(pg_db, cn_id, "CNY") == 9000 - 72
    assert fee_balance(pg_db, "CNY") == 72
    assert owned_balance(pg_db, "operator", "operator", "fx", "HKD") == 10000
    assert owned_balance(pg_db, "operator", "operator", "fx", "CNY") == -9000
    shown = till.get(f"/v1/merchant/charges/{paid.json()['id']}").json()
    assert (shown["payer_asset"], shown["payer_amount"], shown["asset"]) == ("HKD", "100.00", "CNY")
    # a half refund: CNY 45.00 back through the FX accounts, HKD 50.00 to Alice
    assert till.refund(paid.json()["id"], "45.00").status_code == 201
    assert alice.balance()["total"] == "150.00"
    assert merchant_balance(pg_db, cn_id, "CNY") == 9000 - 72 - 4500 + 36


def test_roles_cashier_cannot_refund_or_export_and_keys_see_their_merchant_only(client, pg_db):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    other_id = onboard(admin, name="Other Shop")
    manager, cashier = terminal(admin, merchant_id), terminal(admin, merchant_id, "cashier")
    finance, other = terminal(admin, merchant_id, "finance"), terminal(admin, other_id)
    alice = signup(client, "Alice")
    alice.topup("100.00")
    paid = cashier.charge({"payment_code": code_of(alice), "amount": "30.00", "asset": "HKD"})
    assert paid.status_code == 201, paid.text
    charge_id = paid.json()["id"]
    spare = code_of(alice)
    before = money_rows(pg_db)
    _error(cashier.refund(charge_id, "1.00"), 403, "merchant_role_forbidden")
    _error(cashier.get("/v1/merchant/charges.csv"), 403, "merchant_role_forbidden")
    _error(
        finance.charge({"payment_code": spare, "amount": "1.00", "asset": "HKD"}),
        403,
        "merchant_role_forbidden",
    )
    assert cashier.get("/v1/merchant/charges").status_code == 200
    # another merchant's key: the charge does not exist for it
    _error(other.get(f"/v1/merchant/charges/{charge_id}"), 404, "charge_not_found")
    _error(other.refund(charge_id, "1.00"), 404, "charge_not_found")
    assert other.get("/v1/merchant/charges").json()["items"] == []
    assert money_rows(pg_db) == before
    assert finance.refund(charge_id, "10.00").status_code == 201
    exported = finance.get("/v1/merchant/charges.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["id"], r["amount"], r["refunded"], r["status"]) for r in rows] == [
        (charge_id, "30.00", "10.00", "partially_refunded")
    ]
    assert manager.get("/v1/merchant/charges", status="refunded").json()["items"] == []
    # a person who works for the merchant, signed in, has their role's rights
    bob = signup(client, "Bob")
    made = client.put(
        f"/v1/admin/merchants/{merchant_id}/members/{bob.user_id}",
        json={"role": "cashier"},
        headers=admin.headers(),
    )
    assert made.status_code == 200, made.text
    as_bob = client.post(
        "/v1/merchant/refunds",
        json={"charge_id": charge_id, "amount": "1.00"},
        headers={**bob.headers(), "Idempotency-Key": uuid.uuid4().hex},
    )
    _error(as_bob, 403, "merchant_role_forbidden")
    assert (
        client.get("/v1/merchant/charges", headers=bob.headers()).json()["items"][0]["id"]
        == charge_id
    )
    _error(
        client.get("/v1/merchant/charges", headers=alice.headers()), 403, "not_a_merchant_member"
    )


def test_search_pages_newest_first(client, pg_db):
    admin = operator(client, pg_db)
    till = terminal(admin, onboard(admin))
    alice = signup(client, "Alice")
    alice.topup("100.00")
    ids = []
    for amount in ("1.00", "2.00", "3.00"):
        ids.append(
            till.charge({"payment_code": code_of(alice), "amount": amount, "asset": "HKD"}).json()[
                "id"
            ]
        )
    first = till.get("/v1/merchant/charges", limit=2).json()
    assert [c["id"] for c in first["items"]] == ids[:0:-1] and first["next_cursor"]
    second = till.get("/v1/merchant/charges", limit=2, cursor=first["next_cursor"]).json()
    assert [c["id"] for c in second["items"]] == [ids[0]] and second["next_cursor"] is None
    _error(till.get("/v1/merchant/charges", cursor="nope"), 422, "invalid_cursor")
    _error(till.get("/v1/merchant/charges", status="lost"), 422, "validation_error")


def test_bad_input_is_refused_and_nothing_moves(client, pg_db):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("100.00")
    code = code_of(alice)
    before = money_rows(pg_db)
    _error(till.charge({"amount": "1.00", "asset": "HKD"}), 422, "one_payment_method")
    _error(
        till.charge(
            {"payment_code": code, "token": "4895000000000000", "amount": "1.00", "asset": "HKD"}
        ),
        422,
        "one_payment_method",
    )
    _error(
        till.charge({"payment_code": code, "amount": "-1", "asset": "HKD"}), 422, "invalid_amount"
    )
    _error(
        till.charge({"payment_code": code, "amount": "1.00", "asset": "XXX"}), 422, "unknown_asset"
    )
    _error(
        till.charge({"payment_code": "1" * 24, "amount": "1.00", "asset": "HKD"}),
        422,
        "payment_code_invalid",
    )
    _error(
        till.charge({"payment_code": code, "amount": "1000.00", "asset": "HKD"}),
        422,
        "insufficient_funds",
    )
    assert till.charge({"emv_payload": "0002", "amount": "1.00", "asset": "HKD"}).status_code == 422
    _error(
        till.charge({"payment_code": code, "amount": "1.00", "asset": "HKD"}, idempotency=None),
        422,
        "idempotency_key_required",
    )
    _error(
        client.post("/v1/merchant/charges", json={}, headers={"X-Api-Key": "srk_nope"}),
        401,
        "invalid_api_key",
    )
    _error(client.post("/v1/merchant/charges", json={}), 401, "api_key_required")
    _error(till.refund("ch_nope", "1.00"), 404, "charge_not_found")
    assert money_rows(pg_db) == before
    # the code was given back by every refusal: it still pays
    assert till.charge({"payment_code": code, "amount": "1.00", "asset": "HKD"}).status_code == 201
    # operators: onboarding needs merchants.manage (admin); bad fields are refused
    support = operator(client, pg_db, role="support")
    _error(
        support.post(
            "/v1/admin/merchants",
            {
                "name": "X",
                "mcc": "5812",
                "region": "HK",
                "settlement_bank_account": {
                    "holder_name": "X",
                    "bank_code": "004",
                    "account_number": "123456",
                },
            },
            key=None,
        ),
        403,
        "forbidden",
    )
    _error(
        admin.post(
            "/v1/admin/merchants",
            {
                "name": "X",
                "mcc": "5812",
                "region": "HK",
                "settlement_bank_account": {
                    "holder_name": "X",
                    "bank_code": "4",
                    "account_number": "12",
                },
            },
            key=None,
        ),
        422,
        "invalid_bank_code",
    )
    _error(
        admin.post(
            "/v1/admin/merchants",
            {
                "name": "X",
                "mcc": "58",
                "region": "HK",
                "settlement_bank_account": {
                    "holder_name": "X",
                    "bank_code": "004",
                    "account_number": "123456",
                },
            },
            key=None,
        ),
        422,
        "validation_error",
    )
    _error(alice.post("/v1/admin/merchants", {}, key=None), 403, "forbidden")
    _error(
        admin.post("/v1/admin/merchants/m_0000000000000000/api-keys", {}, key=None),
        404,
        "merchant_not_found",
    )


def test_a_revoked_key_is_refused(client, pg_db):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    made = admin.post(
        f"/v1/admin/merchants/{merchant_id}/api-keys", {"name": "till 1"}, key=None
    ).json()
    gone = client.delete(
        f"/v1/admin/merchants/{merchant_id}/api-keys/{made['id']}", headers=admin.headers()
    )
    assert gone.status_code == 204, gone.text
    refused = client.get("/v1/merchant/charges", headers={"X-Api-Key": made["api_key"]})
    _error(refused, 401, "invalid_api_key")


def test_a_user_pays_static_and_dynamic_merchant_codes(client, pg_db):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("100.00")
    static = client.post("/v1/merchant/qr", json={}, headers=till.headers(None))
    assert static.status_code == 201, static.text
    payload = static.json()["payload"]
    decoded = decode(payload)
    assert decoded.value("01") == "11" and decoded.value("53") == "344"
    _error(alice.post("/v1/pay/emv", {"payload": payload}), 422, "amount_required")
    assert alice.post("/v1/pay/emv", {"payload": payload, "amount": "12.00"}).status_code == 201
    dynamic = client.post(
        "/v1/merchant/qr", json={"amount": "8.50"}, headers=till.headers(None)
    ).json()["payload"]
    assert decode(dynamic).value("01") == "12" and decode(dynamic).value("54") == "8.50"
    _error(
        alice.post("/v1/pay/emv", {"payload": dynamic, "amount": "9.00"}), 422, "amount_mismatch"
    )
    # a changed amount is refused: code's amount is checked against the stored one
    fields = [f if f.id != "54" else Field("54", "0.01") for f in decode(dynamic).fields]
    _error(alice.post("/v1/pay/emv", {"payload": encode(fields)}), 422, "emv_amount_invalid")
    paid = alice.post("/v1/pay/emv", {"payload": dynamic})
    assert paid.status_code == 201, paid.text
    _error(alice.post("/v1/pay/emv", {"payload": dynamic}), 409, "qr_used")
    assert alice.balance()["total"] == "79.50"
    assert (
        merchant_balance(pg_db, merchant_id) == 2050 - 9 - 6
    )  # fees rounded down: 9.6 -> 9, 6.8 -> 6 cents
    with pg_db.connect() as connection:
        methods = connection.execute(select(Charge.method)).scalars().all()
    assert methods == ["qr", "qr"]
    # a terminal reads a payment code carried in an EMV payload too
    code = code_of(alice)
    carried = encode(
        [
            Field("00", "01"),
            Field("26", fields=(Field("00", "app.strongroom.code"), Field("01", code))),
        ]
    )
    assert (
        till.charge({"emv_payload": carried, "amount": "1.00", "asset": "HKD"}).status_code == 201
    )


def test_racing_refunds_never_exceed_the_charge(client, pg_db, live_url):
    """Eight refunds of 30.00 race for a 100.00 charge on a real server: exactly three go
    through (the charge's row is locked while each is decided), the rest are refused."""
    import threading

    import httpx

    admin = operator(client, pg_db)
    till = terminal(admin, onboard(admin))
    alice = signup(client, "Alice")
    alice.topup("100.00")
    paid = till.charge({"payment_code": code_of(alice), "amount": "100.00", "asset": "HKD"})
    charge_id = paid.json()["id"]
    answers: list[int] = []
    start = threading.Barrier(8)

    def refund() -> None:
        with httpx.Client(base_url=live_url, timeout=30) as http:
            start.wait()
            answer = http.post(
                "/v1/merchant/refunds",
                json={"charge_id": charge_id, "amount": "30.00"},
                headers=till.headers(),
            )
            answers.append(answer.status_code)

    threads = [threading.Thread(target=refund) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201] * 3 + [422] * 5
    assert alice.balance()["total"] == "90.00"
    assert till.get(f"/v1/merchant/charges/{charge_id}").json()["refunded"] == "90.00"


def test_the_worked_example_on_sqlite(sqlite_db):
    """The embedded default: a charge and a partial refund on SQLite, the ledger consistent."""
    from fastapi.testclient import TestClient

    from strongroom.app import create_app
    from tests.api.conftest import make_settings

    with TestClient(create_app(make_settings(sqlite_db), sqlite_db)) as lite:
        admin = operator(lite, sqlite_db)
        merchant_id = onboard(admin)
        till = terminal(admin, merchant_id)
        alice = signup(lite, "Alice")
        alice.topup("100.00")
        paid = till.charge({"payment_code": code_of(alice), "amount": "100.00", "asset": "HKD"})
        assert paid.status_code == 201, paid.text
        assert till.refund(paid.json()["id"], "40.00").status_code == 201
        assert alice.balance()["total"] == "40.00"
        assert merchant_balance(sqlite_db, merchant_id) == 9920 - 3968
        assert fee_balance(sqlite_db) == 48
    with db.make_session_factory(sqlite_db)() as session:
        assert reports.check(session=session).ok


def test_a_cn_merchant_with_a_12_digit_cnaps_bank_code_is_onboarded_whole(client, pg_db):
    """Mainland bank codes (CNAPS) have 12 digits; the banking rules accept them, so onboarding
    stores the code whole instead of failing in the database."""
    admin = operator(client, pg_db)
    bank = {
        "holder_name": "Shenzhen Tea Co",
        "bank_code": "1021-0009-9996",
        "account_number": "6222021234567890",
    }
    merchant_id = onboard(admin, region="CN", name="Shenzhen Tea", settlement_bank_account=bank)
    read = admin.get(f"/v1/admin/merchants/{merchant_id}")
    assert read.status_code == 200, read.text
    assert (read.json()["currency"], read.json()["settlement_bank_code"]) == ("CNY", "102100099996")
    too_long = {**bank, "bank_code": "1021000999961"}
    _error(
        admin.post(
            "/v1/admin/merchants",
            {"name": "X", "mcc": "5812", "region": "CN", "settlement_bank_account": too_long},
            key=None,
        ),
        422,
        "invalid_bank_code",
    )


def test_a_settlement_holder_name_of_200_characters_is_onboarded_whole(client, pg_db):
    """The onboarding API and the banking rules take holder names of up to 200 characters;
    the merchant's column holds them (it held 140: a database error on PostgreSQL)."""
    admin = operator(client, pg_db)
    name = ("Lucky Tea House Trading Company Limited " * 6)[:200]
    bank = {"holder_name": name, "bank_code": "024", "account_number": "123456789012"}
    merchant_id = onboard(admin, name="Long Name Tea", settlement_bank_account=bank)
    with pg_db.connect() as conn:
        stored = conn.execute(
            text("SELECT settlement_holder_name FROM merchants WHERE id = :id"), {"id": merchant_id}
        ).scalar_one()
    assert stored == name.strip()
    too_long = {**bank, "holder_name": name + "x"}
    response = admin.post(
        "/v1/admin/merchants",
        {"name": "X", "mcc": "5812", "region": "HK", "settlement_bank_account": too_long},
        key=None,
    )
    assert response.status_code == 422, response.text
