"""Finding 2 of issue #10 (R-SEC-10) over HTTP: every operator role could move money through
the raw ledger API. Each attack is performed and fails (status, error code, every table's row
count unchanged but the audit log's, the victim's balance unchanged); the honest paths work: a
ledger service key posts a batch (audited as the key), finance proposes and admin approves an
adjustment (the money moves once, both steps audited)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.adjustments.models import Adjustment
from strongroom.identity import api_keys, audit
from strongroom.identity.models import AuditEvent
from strongroom.ledger import service as ledger
from strongroom.ledger.models import Account, Transfer
from tests.api.conftest import Caller, operator, signup
from tests.api.service_keys import ledger_integration
from tests.api.test_authz_matrix import rows


def accounts_of(engine: Engine, victim: Caller) -> tuple[int, int]:
    """The omnibus account (HKD) and the victim's HKD wallet."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        omnibus = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        wallet = ledger.user_wallet_id(session=session, user_id=victim.user_id, asset="HKD")
    return omnibus, wallet


def events(engine: Engine, action: str) -> list[AuditEvent]:
    with db.make_session_factory(engine)() as session:
        found = session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(found)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def funded_victim(client, engine: Engine) -> tuple[Caller, int, int]:
    victim = signup(client, "Victim", engine=engine)
    victim.topup("10.00")
    omnibus, wallet = accounts_of(engine, victim)
    return victim, omnibus, wallet


def propose(caller: Caller, debit: int, credit: int, amount: str, **extra: Any) -> httpx.Response:
    key = extra.pop("key", None)
    body = {
        "debit_account_id": debit,
        "credit_account_id": credit,
        "asset": "HKD",
        "amount": amount,
        "reason": "refund of a double charge, ticket 4711",
    }
    return caller.post("/v1/admin/adjustments", body | extra, key=key)


# --------------------------------------------------------------------------- the attacks


def test_support_cannot_post_a_batch_from_the_omnibus_account_into_a_wallet(client, pg_db):
    victim, omnibus, wallet = funded_victim(client, pg_db)
    attacker = signup(client, "Mallory")
    _, attacker_wallet = accounts_of(pg_db, signup(client, "Other"))
    support = operator(client, pg_db, "support")
    others = [operator(client, pg_db, role) for role in ("kyc_reviewer", "finance", "admin")]
    before = rows(pg_db)
    mint = {"debit_account_id": omnibus, "credit_account_id": wallet, "asset": "HKD"}
    drain = {"debit_account_id": wallet, "credit_account_id": attacker_wallet, "asset": "HKD"}
    for transfer in (mint | {"amount": "1000000.00"}, drain | {"amount": "10.00"}):
        answer = support.post("/v1/admin/ledger/transfers", {"transfers": [transfer]}, key=None)
        assert answer.status_code == 403, answer.text
        assert error_code(answer) == "service_key_required"
    for caller in others:  # no role at all: not finance, not even admin
        batch = {"transfers": [mint | {"amount": "1.00"}]}
        answer = caller.post("/v1/admin/ledger/transfers", batch, key=None)
        assert (answer.status_code, error_code(answer)) == (403, "service_key_required")
    assert rows(pg_db) == before
    assert victim.balance()["total"] == "10.00"
    assert attacker.get("/v1/balances").json()["balances"] == []


def test_no_role_and_no_key_creates_a_user_wallet_that_may_go_negative(client, pg_db):
    kyc = operator(client, pg_db, "kyc_reviewer")
    mallory = signup(client, "Mallory")
    integration = ledger_integration(client, pg_db)
    wallet = {
        "owner_type": "user",
        "owner_id": mallory.user_id,
        "kind": "wallet",
        "asset": "HKD",
        "allow_negative": True,
    }
    before = rows(pg_db)
    answer = kyc.post("/v1/admin/ledger/accounts", wallet, key=None)
    assert (answer.status_code, error_code(answer)) == (403, "service_key_required")
    answer = integration.post("/v1/admin/ledger/accounts", wallet)
    assert (answer.status_code, error_code(answer)) == (422, "user_account_may_not_go_negative")
    answer = integration.post("/v1/admin/ledger/accounts", wallet | {"kind": "savings"})
    assert (answer.status_code, error_code(answer)) == (422, "user_account_may_not_go_negative")
    assert rows(pg_db) == before
    with db.make_session_factory(pg_db)() as session:
        assert session.scalars(select(Account).filter_by(owner_id=mallory.user_id)).all() == []
    honest = integration.post("/v1/admin/ledger/accounts", wallet | {"allow_negative": False})
    assert honest.status_code == 201, honest.text
    assert honest.json()["allow_negative"] is False


def test_support_and_kyc_cannot_read_statements_or_accounts(client, pg_db):
    victim, _, wallet = funded_victim(client, pg_db)
    for role in ("support", "kyc_reviewer"):
        caller = operator(client, pg_db, role)
        for path in (
            f"/v1/admin/ledger/accounts/{wallet}",
            f"/v1/admin/ledger/accounts/{wallet}/statement",
        ):
            answer = caller.get(path)
            assert (answer.status_code, error_code(answer)) == (403, "forbidden"), role
            assert answer.json()["error"]["details"]["roles"] == ["admin", "finance"]
            assert "10.00" not in answer.text and victim.user_id not in answer.text
    finance = operator(client, pg_db, "finance")
    statement = finance.get(f"/v1/admin/ledger/accounts/{wallet}/statement")
    assert statement.status_code == 200, statement.text
    assert [item["balance_after"] for item in statement.json()["items"]] == ["10.00"]


def test_an_operator_cannot_approve_their_own_adjustment(client, pg_db):
    victim, omnibus, wallet = funded_victim(client, pg_db)
    finance = operator(client, pg_db, "finance")
    proposed = propose(finance, omnibus, wallet, "500.00")
    assert proposed.status_code == 201, proposed.text
    adjustment = proposed.json()
    assert adjustment["status"] == "pending" and adjustment["transfer_id"] is None
    before, refused_before = rows(pg_db), len(events(pg_db, "adjustment.self_approval_refused"))
    for _ in range(2):
        answer = finance.post(f"/v1/admin/adjustments/{adjustment['id']}/approve", {}, key=None)
        assert (answer.status_code, error_code(answer)) == (403, "own_adjustment")
    assert rows(pg_db) == before
    assert victim.balance()["total"] == "10.00"
    assert finance.get(f"/v1/admin/adjustments/{adjustment['id']}").json()["status"] == "pending"
    refused = events(pg_db, "adjustment.self_approval_refused")[refused_before:]
    assert [event.actor_id for event in refused] == [finance.user_id] * 2  # the attempts stay
    admin = operator(client, pg_db, "admin")
    own = propose(admin, omnibus, wallet, "1.00").json()  # an admin is no exception
    answer = admin.post(f"/v1/admin/adjustments/{own['id']}/approve", {}, key=None)
    assert (answer.status_code, error_code(answer)) == (403, "own_adjustment")


def test_roles_without_the_capability_cannot_propose_or_approve(client, pg_db):
    victim, omnibus, wallet = funded_victim(client, pg_db)
    pending = propose(operator(client, pg_db, "finance"), omnibus, wallet, "5.00").json()
    callers = {role: operator(client, pg_db, role) for role in ("support", "kyc_reviewer")}
    before = rows(pg_db)
    for role, caller in callers.items():
        answers = [
            propose(caller, omnibus, wallet, "5.00"),
            caller.post(f"/v1/admin/adjustments/{pending['id']}/approve", {}, key=None),
            caller.post(f"/v1/admin/adjustments/{pending['id']}/reject", {}, key=None),
            caller.get("/v1/admin/adjustments"),
        ]
        for answer in answers:
            assert (answer.status_code, error_code(answer)) == (403, "forbidden"), role
    assert rows(pg_db) == before
    assert victim.balance()["total"] == "10.00"


def test_an_adjustment_cannot_make_a_user_wallet_negative(client, pg_db):
    victim, omnibus, wallet = funded_victim(client, pg_db)
    finance, admin = operator(client, pg_db, "finance"), operator(client, pg_db, "admin")
    adjustment = propose(finance, wallet, omnibus, "10.01").json()
    before = rows(pg_db)
    answer = admin.post(f"/v1/admin/adjustments/{adjustment['id']}/approve", {}, key=None)
    assert (answer.status_code, error_code(answer)) == (422, "insufficient_funds")
    assert rows(pg_db) == before
    assert admin.get(f"/v1/admin/adjustments/{adjustment['id']}").json()["status"] == "pending"
    assert victim.balance()["total"] == "10.00"


# --------------------------------------------------------------------------- the honest paths


def test_a_ledger_key_posts_a_batch_and_every_use_is_audited_as_the_key(client, pg_db):
    victim, omnibus, wallet = funded_victim(client, pg_db)
    integration = ledger_integration(client, pg_db)
    transfer = {
        "id": f"settlement-{uuid.uuid4().hex[:8]}",
        "debit_account_id": omnibus,
        "credit_account_id": wallet,
        "asset": "HKD",
        "amount": "2.50",
        "code": "settlement",
    }
    answer = integration.post("/v1/admin/ledger/transfers", {"transfers": [transfer]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 1
    again = integration.post("/v1/admin/ledger/transfers", {"transfers": [transfer]})
    assert again.json()["results"][0]["status"] == "exists"
    assert victim.balance()["total"] == "12.50"
    used = events(pg_db, "api_key.request")
    with db.make_session_factory(pg_db)() as session:
        key = session.scalars(select(api_keys.ApiKey)).one()
    assert [event.actor_id for event in used] == [key.id, key.id]
    assert {event.actor_role for event in used} == {"api_key"}
    assert all(event.ip == "testclient" and event.category == "operator" for event in used)
    details = audit.details(used[0])
    assert details["key_name"] == key.name and details["scope"] == "ledger"
    assert (details["method"], details["route"]) == ("POST", "/v1/admin/ledger/transfers")
    assert integration.key not in str([audit.details(event) for event in used])


def test_finance_proposes_admin_approves_and_the_money_moves_once(client, pg_db):
    victim, omnibus, wallet = funded_victim(client, pg_db)
    finance, admin = operator(client, pg_db, "finance"), operator(client, pg_db, "admin")
    key = uuid.uuid4().hex
    proposed = propose(finance, omnibus, wallet, "25.00", key=key)
    assert proposed.status_code == 201, proposed.text
    adjustment = proposed.json()
    assert adjustment["proposed_by"] == finance.user_id and adjustment["amount"] == "25.00"
    resent = propose(finance, omnibus, wallet, "25.00", key=key)  # a double click
    assert (resent.status_code, resent.json()["id"]) == (201, adjustment["id"])
    other = propose(finance, omnibus, wallet, "26.00", key=key)
    assert (other.status_code, error_code(other)) == (409, "idempotency_key_reused")
    assert victim.balance()["total"] == "10.00"  # proposing moves nothing
    listed = admin.get("/v1/admin/adjustments", status="pending").json()["items"]
    assert [item["id"] for item in listed] == [adjustment["id"]]

    approved = admin.post(f"/v1/admin/adjustments/{adjustment['id']}/approve", {}, key=None)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["decided_by"]) == ("approved", admin.user_id)
    assert body["transfer_id"] == f"adjustment:{adjustment['id']}"
    assert victim.balance()["total"] == "35.00"
    twice = admin.post(f"/v1/admin/adjustments/{adjustment['id']}/approve", {}, key=None)
    assert (twice.status_code, error_code(twice)) == (409, "adjustment_not_pending")
    assert twice.json()["error"]["details"]["status"] == "approved"
    assert victim.balance()["total"] == "35.00"
    history = victim.get("/v1/transactions").json()["items"]
    assert history[0]["type"] == "adjustment" and history[0]["note"] is None  # no reason shown

    proposed_event = events(pg_db, "adjustment.proposed")[-1]
    approved_event = events(pg_db, "adjustment.approved")[-1]
    assert (proposed_event.actor_id, approved_event.actor_id) == (finance.user_id, admin.user_id)
    assert approved_event.subject_user_id == victim.user_id
    assert audit.details(approved_event)["transfer_id"] == body["transfer_id"]
    assert audit.details(approved_event)["amount_minor"] == "2500"


def test_two_checkers_approving_at_once_move_the_money_once(live_url, pg_db):
    with httpx.Client(base_url=live_url, timeout=30) as http:
        victim, omnibus, wallet = funded_victim(http, pg_db)
        maker = operator(http, pg_db, "finance")
        checkers = [operator(http, pg_db, "admin"), operator(http, pg_db, "finance")]
        adjustment = propose(maker, omnibus, wallet, "7.00").json()
    answers: list[httpx.Response] = []
    start = threading.Barrier(len(checkers))

    def approve(checker: Caller) -> None:
        with httpx.Client(base_url=live_url, timeout=30) as own:
            start.wait()
            answers.append(
                own.post(
                    f"/v1/admin/adjustments/{adjustment['id']}/approve",
                    headers={"Authorization": f"Bearer {checker.token}"},
                )
            )

    threads = [threading.Thread(target=approve, args=(checker,)) for checker in checkers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answer.status_code for answer in answers) == [200, 409]
    with db.make_session_factory(pg_db)() as session:
        transfers = session.scalars(select(Transfer).where(Transfer.code == "adjustment")).all()
        assert [transfer.amount_minor for transfer in transfers] == [7_00]
        assert session.get_one(Adjustment, adjustment["id"]).status == "approved"
    with httpx.Client(base_url=live_url, timeout=30) as http:
        victim.client = http
        assert victim.balance()["total"] == "17.00"


def test_a_checker_rejects_and_a_maker_withdraws_and_nothing_moves(client, pg_db):
    victim, omnibus, wallet = funded_victim(client, pg_db)
    finance, admin = operator(client, pg_db, "finance"), operator(client, pg_db, "admin")
    first = propose(finance, omnibus, wallet, "3.00").json()
    second = propose(finance, omnibus, wallet, "4.00").json()
    rejected = admin.post(
        f"/v1/admin/adjustments/{first['id']}/reject", {"note": "no ticket for this"}, key=None
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["note"]) == (
        "rejected",
        "no ticket for this",
    )
    withdrawn = finance.post(f"/v1/admin/adjustments/{second['id']}/reject", {}, key=None)
    assert (withdrawn.status_code, withdrawn.json()["decided_by"]) == (200, finance.user_id)
    late = admin.post(f"/v1/admin/adjustments/{first['id']}/approve", {}, key=None)
    assert (late.status_code, error_code(late)) == (409, "adjustment_not_pending")
    assert victim.balance()["total"] == "10.00"
    assert [e.actor_id for e in events(pg_db, "adjustment.rejected")] == [
        admin.user_id,
        finance.user_id,
    ]
    unknown = admin.post("/v1/admin/adjustments/999999/approve", {}, key=None)
    assert (unknown.status_code, error_code(unknown)) == (404, "adjustment_not_found")


def test_bad_proposals_are_refused_with_a_clear_code_and_nothing_written(client, pg_db):
    _, omnibus, wallet = funded_victim(client, pg_db)
    finance = operator(client, pg_db, "finance")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        usd = ledger.operator_account(session=session, kind="bank_omnibus", asset="USD").id
    before = rows(pg_db)
    cases = [
        (propose(finance, omnibus, wallet, "0.00"), 422, "invalid_amount"),
        (propose(finance, omnibus, wallet, "1.001"), 422, "invalid_amount"),
        (propose(finance, omnibus, omnibus, "1.00"), 422, "same_account"),
        (propose(finance, omnibus, 987654, "1.00"), 404, "account_not_found"),
        (propose(finance, usd, wallet, "1.00"), 422, "asset_mismatch"),
        (propose(finance, omnibus, wallet, "1.00", reason="   "), 422, "invalid_reason"),
        (propose(finance, omnibus, wallet, "1.00", asset="XXX"), 422, "unknown_asset"),
        (finance.get("/v1/admin/adjustments", status="done"), 422, "validation_error"),
        (finance.get("/v1/admin/adjustments", cursor="nope"), 422, "invalid_cursor"),
    ]
    for answer, status, code in cases:
        assert (answer.status_code, error_code(answer)) == (status, code), answer.text
    assert rows(pg_db) == before
