"""Operators and merchants (issue #13, item 2): the merchants list (keyset pages, by status
and region, bad filters refused), suspending (with a reason, audited; twice: 409) and
reinstating (audited; an active one: 409). A suspended merchant's terminal key and its people
are refused (403 ``merchant_suspended``) with nothing moved, its QR code cannot be paid, its
open payout-batch rows fail unpaid; its settlement still pays what it earned. Reinstated, the
same key charges again. Every test ends with the ledger's invariants holding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity.models import AuditEvent
from strongroom.ledger import reports
from strongroom.settlement import batch_payouts
from strongroom.settlement import service as settlement
from strongroom.settlement.models import PayoutRow
from tests.api.conftest import make_settings, operator, signup
from tests.api.merchant_support import code_of, merchant_balance, money_rows, onboard, terminal


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def _audited(engine: Engine, action: str, merchant_id: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(AuditEvent.details_json, AuditEvent.actor_id).where(AuditEvent.action == action)
        ).all()
    found = []
    for details, actor in rows:
        parsed = json.loads(details)
        if parsed.get("merchant_id") == merchant_id:
            found.append({**parsed, "actor": actor})
    return found


def test_the_list_pages_and_filters(client, pg_db):  # type: ignore[no-untyped-def]
    admin = operator(client, pg_db)
    made = [onboard(admin, name=f"Shop {n}") for n in range(3)]
    made.append(onboard(admin, region="CN", name="Shenzhen Noodles"))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = admin.get("/v1/admin/merchants", **params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [item["merchant_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))  # newest first, each once
    first = admin.get("/v1/admin/merchants").json()["items"][0]
    assert first["merchant_id"] == made[-1] and first["region"] == "CN"
    assert first["currency"] == "CNY" and first["status"] == "active"
    assert first["settlement_account_number"] == "****6789"  # masked
    assert first["suspended_reason"] is None
    cn = admin.get("/v1/admin/merchants", region="CN").json()["items"]
    assert [m["merchant_id"] for m in cn] == [made[-1]]
    assert admin.post(
        f"/v1/admin/merchants/{made[0]}/suspend", {"reason": "chargebacks"}, key=None
    ).is_success
    suspended = admin.get("/v1/admin/merchants", status="suspended").json()["items"]
    assert [(m["merchant_id"], m["suspended_reason"]) for m in suspended] == [
        (made[0], "chargebacks")
    ]
    assert suspended[0]["suspended_by"] == admin.user_id
    active = admin.get("/v1/admin/merchants", status="active", region="HK").json()["items"]
    assert {m["merchant_id"] for m in active} == set(made[1:3])
    # bad filters and cursors: 422, with the error body
    _error(admin.get("/v1/admin/merchants", status="closed"), 422, "validation_error")
    _error(admin.get("/v1/admin/merchants", region="US"), 422, "validation_error")
    _error(admin.get("/v1/admin/merchants", limit=0), 422, "validation_error")
    _error(admin.get("/v1/admin/merchants", limit=101), 422, "validation_error")
    _error(admin.get("/v1/admin/merchants", cursor="not-a-cursor"), 422, "invalid_cursor")
    # reading needs `merchants` (admin, support, finance); not a compliance officer, no user
    support = operator(client, pg_db, role="support")
    assert support.get("/v1/admin/merchants").status_code == 200
    _error(
        operator(client, pg_db, role="kyc_reviewer").get("/v1/admin/merchants"), 403, "forbidden"
    )
    _error(signup(client, "Bob").get("/v1/admin/merchants"), 403, "forbidden")


def test_a_suspended_merchant_is_refused_and_reinstated_works_again(client, pg_db):  # type: ignore[no-untyped-def]
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("100.00")
    assert till.charge(
        {"payment_code": code_of(alice), "amount": "10.00", "asset": "HKD"}
    ).is_success
    static = client.post("/v1/merchant/qr", json={}, headers=till.headers(None))
    assert static.status_code == 201, static.text
    suspended = admin.post(
        f"/v1/admin/merchants/{merchant_id}/suspend", {"reason": "  suspected   fraud "}, key=None
    )
    assert suspended.status_code == 200, suspended.text
    body = suspended.json()
    assert (body["status"], body["suspended_reason"]) == ("suspended", "suspected fraud")
    (audited,) = _audited(pg_db, "merchant.suspended", merchant_id)
    assert audited["reason"] == "suspected fraud" and audited["actor"] == admin.user_id
    # the terminal key: refused, nothing moved, the payer's code not used up
    code = code_of(alice)
    before, balance = money_rows(pg_db), merchant_balance(pg_db, merchant_id)
    _error(
        till.charge({"payment_code": code, "amount": "5.00", "asset": "HKD"}),
        403,
        "merchant_suspended",
    )
    _error(till.get("/v1/merchant/charges"), 403, "merchant_suspended")
    _error(  # its printed QR code cannot be paid either
        alice.post("/v1/pay/emv", {"payload": static.json()["payload"], "amount": "3.00"}),
        403,
        "merchant_suspended",
    )
    assert money_rows(pg_db) == before and merchant_balance(pg_db, merchant_id) == balance
    assert alice.balance()["total"] == "90.00"
    # suspending again: 409, the first reason stays
    _error(
        admin.post(f"/v1/admin/merchants/{merchant_id}/suspend", {"reason": "again"}, key=None),
        409,
        "merchant_already_suspended",
    )
    listed = admin.get("/v1/admin/merchants", status="suspended").json()["items"]
    assert listed[0]["suspended_reason"] == "suspected fraud"
    # reinstated: the same key and the same code charge again
    reinstated = admin.post(
        f"/v1/admin/merchants/{merchant_id}/reinstate", {"reason": "cleared"}, key=None
    )
    assert reinstated.status_code == 200, reinstated.text
    assert reinstated.json()["status"] == "active"
    assert reinstated.json()["suspended_reason"] is None
    (back,) = _audited(pg_db, "merchant.reinstated", merchant_id)
    assert (back["reason"], back["suspended_reason"]) == ("cleared", "suspected fraud")
    charged = till.charge({"payment_code": code, "amount": "5.00", "asset": "HKD"})
    assert charged.status_code == 201, charged.text
    assert alice.balance()["total"] == "85.00"
    _error(
        admin.post(f"/v1/admin/merchants/{merchant_id}/reinstate", {"reason": "x"}, key=None),
        409,
        "merchant_not_suspended",
    )


def test_suspending_refuses_bad_input_and_the_wrong_role(client, pg_db):  # type: ignore[no-untyped-def]
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    path = f"/v1/admin/merchants/{merchant_id}/suspend"
    others = [operator(client, pg_db, role=role) for role in ("support", "finance")]
    others.append(signup(client, "Eve"))  # support and finance read merchants, not stop them
    before = money_rows(pg_db)
    for caller in others:
        _error(caller.post(path, {"reason": "x"}, key=None), 403, "forbidden")
    _error(client.post(path, json={"reason": "x"}), 401, "unauthorized")
    _error(admin.post(path, {}, key=None), 422, "validation_error")
    _error(admin.post(path, {"reason": ""}, key=None), 422, "validation_error")
    _error(admin.post(path, {"reason": "   "}, key=None), 422, "invalid_reason")
    _error(admin.post(path, {"reason": "x" * 201}, key=None), 422, "validation_error")
    _error(admin.post(path, {"reason": "x", "extra": 1}, key=None), 422, "validation_error")
    _error(
        admin.post("/v1/admin/merchants/m_0000000000000000/suspend", {"reason": "x"}, key=None),
        404,
        "merchant_not_found",
    )
    _error(
        admin.post("/v1/admin/merchants/m_0000000000000000/reinstate", {"reason": "x"}, key=None),
        404,
        "merchant_not_found",
    )
    _error(
        admin.post("/v1/admin/merchants/nope/suspend", {"reason": "x"}, key=None),
        422,
        "validation_error",
    )
    assert money_rows(pg_db) == before
    assert admin.get(f"/v1/admin/merchants/{merchant_id}").json()["status"] == "active"
    assert _audited(pg_db, "merchant.suspended", merchant_id) == []


def test_a_suspended_merchant_s_settlement_still_pays_and_its_batch_rows_fail_unpaid(client, pg_db):  # type: ignore[no-untyped-def]
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id, role="owner")
    alice = signup(client, "Alice")
    alice.topup("300.00")
    assert till.charge(
        {"payment_code": code_of(alice), "amount": "200.00", "asset": "HKD"}
    ).is_success
    upload = client.post(
        "/v1/merchant/payout-batches",
        content=(
            "reference,holder_name,bank_code,account_number,asset,amount\n"
            "sup-1,Tea Supplier Ltd,004,123456780,HKD,50.00\n"
        ),
        headers={**till.headers(), "Content-Type": "text/csv"},
    )
    assert upload.status_code == 201, upload.text
    batch_id = upload.json()["id"]
    assert admin.post(
        f"/v1/admin/merchants/{merchant_id}/suspend", {"reason": "review"}, key=None
    ).is_success
    settings = make_settings(pg_db)
    factory = db.make_session_factory(pg_db)
    ran = batch_payouts.run_batch(factory, settings.asset_registry(), batch_id=batch_id)
    assert (ran.status, ran.paid, ran.failed) == ("completed", 0, 1)
    with factory() as session:
        row = session.scalars(select(PayoutRow).where(PayoutRow.batch_id == batch_id)).one()
        assert (row.status, row.error) == ("failed", "merchant_suspended")
    assert merchant_balance(pg_db, merchant_id) == 19840  # nothing left for the supplier
    now = db.utcnow()
    settled = settlement.settle(
        factory,
        settings.settlement,
        settings.asset_registry(),
        day=settlement.local_day(now, settings.settlement.timezone),
        now=now + timedelta(days=2),
    )
    assert settled.paid == 1
    assert merchant_balance(pg_db, merchant_id) == 0  # what it earned went to its bank
