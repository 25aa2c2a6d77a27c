"""The walking skeleton of the HTTP API on real PostgreSQL: sign-up, top-up, transfer, history,
idempotency (P3) and the error model (P4) for bad input, with nothing written on refusal."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from strongroom import db
from strongroom.identity.models import AuthToken
from strongroom.ledger.models import Transfer
from tests.api.conftest import Caller, operator, signup
from tests.api.service_keys import ledger_integration


def transfer_count(engine) -> int:
    with db.make_session_factory(engine)() as session:
        return int(session.scalar(select(func.count()).select_from(Transfer)) or 0)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    return body["error"]


def test_health_openapi_and_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/auth/register",
        "/v1/balances",
        "/v1/topups",
        "/v1/transfers",
        "/v1/transactions",
    ):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_register_login_me(client):
    alice = signup(client, "Alice")
    me = alice.get("/v1/me").json()
    assert me["user_id"] == alice.user_id and me["email"] == alice.email
    assert me["region"] == "HK" and me["kyc_tier"] == "unverified"
    assert me["two_factor"] is False and me["anti_phishing_code_set"] is False
    wrong = client.post("/v1/auth/login", json={"email": alice.email, "password": "nope-nope-1"})
    assert_error(wrong, 401, "invalid_credentials")
    unknown = client.post("/v1/auth/login", json={"email": "x@example.com", "password": "p" * 12})
    assert_error(unknown, 401, "invalid_credentials")
    again = client.post(
        "/v1/auth/register",
        json={"email": alice.email.upper(), "password": "another-password-2", "name": "Other"},
    )
    # a taken email answers as a new one would (issue #10): its owner is emailed instead
    assert again.status_code == 201 and again.json()["user_id"] != alice.user_id


def test_topup_transfer_and_both_histories(client, pg_db):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("100.00")
    sent = alice.post(
        "/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "30.25", "note": "lunch"}
    )
    assert sent.status_code == 201 and sent.json()["status"] == "completed"
    assert alice.balance() == {
        "asset": "HKD",
        "total": "69.75",
        "available": "69.75",
        "pending": "0.00",
        "locked": "0.00",
        "unlocks": [],
    }
    assert bob.balance()["total"] == "30.25"
    (incoming,) = bob.get("/v1/transactions").json()["items"]
    assert incoming["direction"] == "in" and incoming["amount"] == "30.25"
    assert incoming["counterparty"] == {"type": "user", "id": alice.user_id, "name": "Alice"}
    assert incoming["note"] == "lunch" and incoming["transfer_id"] == sent.json()["id"]
    outgoing, topup = alice.get("/v1/transactions").json()["items"]
    assert (outgoing["direction"], outgoing["balance_after"]) == ("out", "69.75")
    assert (topup["type"], topup["balance_after"]) == ("topup", "100.00")
    by_id = alice.post("/v1/transfers", {"to": bob.user_id, "asset": "HKD", "amount": "0.75"})
    assert by_id.status_code == 201
    assert bob.balance()["total"] == "31.00"


def test_history_pages_with_cursor_and_exports_csv(client):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("10.00")
    for cents in range(1, 6):
        alice.post("/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": f"0.0{cents}"})
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = alice.get("/v1/transactions", **params).json()
        seen += [item["amount"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["0.05", "0.04", "0.03", "0.02", "0.01", "10.00"]
    assert_error(alice.get("/v1/transactions", cursor="x1"), 422, "invalid_cursor")
    csv_text = alice.get("/v1/transactions.csv").text
    lines = csv_text.strip().splitlines()
    assert len(lines) == 7 and lines[-1].split(",")[8] == "9.85"


def test_idempotent_retry_returns_the_same_and_moves_once(client, pg_db):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("50.00")
    body = {"to": bob.email, "asset": "HKD", "amount": "5.00"}
    first = alice.post("/v1/transfers", body, key="retry-1")
    second = alice.post("/v1/transfers", body, key="retry-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert bob.balance()["total"] == "5.00"
    other = alice.post("/v1/transfers", body | {"amount": "6.00"}, key="retry-1")
    assert_error(other, 409, "idempotency_key_reused")
    assert bob.balance()["total"] == "5.00"
    # A key belongs to its user: Bob may use the same key for his own request.
    assert (
        bob.post(
            "/v1/transfers", {"to": alice.email, "asset": "HKD", "amount": "1.00"}, key="retry-1"
        ).status_code
        == 201
    )
    assert_error(alice.post("/v1/transfers", body, key=None), 422, "idempotency_key_required")
    assert_error(alice.post("/v1/transfers", body, key="bad key!"), 422, "invalid_idempotency_key")


def test_refused_request_is_not_remembered_by_its_key(client):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    body = {"to": bob.email, "asset": "HKD", "amount": "5.00"}
    assert_error(alice.post("/v1/transfers", body, key="k"), 422, "insufficient_funds")
    alice.topup("5.00")
    assert alice.post("/v1/transfers", body, key="k").status_code == 201


def test_concurrent_duplicates_make_exactly_one_transfer(app, live_url, pg_db):
    with httpx.Client(base_url=live_url) as setup:
        alice, bob = signup(setup, "Alice", engine=pg_db), signup(setup, "Bob", engine=pg_db)
        alice.topup("100.00")
    before = transfer_count(pg_db)
    body = {"to": bob.email, "asset": "HKD", "amount": "7.00"}
    responses: list[httpx.Response] = []
    barrier = threading.Barrier(12)

    def send() -> None:
        with httpx.Client(base_url=live_url, timeout=30) as http:
            caller = Caller(http, alice.token, alice.user_id, alice.email)
            barrier.wait()
            responses.append(caller.post("/v1/transfers", body, key="same-key"))

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in responses] == [201] * 12
    assert len({r.json()["id"] for r in responses}) == 1
    assert transfer_count(pg_db) == before + 1
    with httpx.Client(base_url=live_url) as http:
        assert Caller(http, bob.token, bob.user_id, bob.email).balance()["total"] == "7.00"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"asset": "HKD", "amount": "0"}, "invalid_amount"),
        ({"asset": "HKD", "amount": "0.00"}, "invalid_amount"),
        ({"asset": "HKD", "amount": "-5.00"}, "invalid_amount"),
        ({"asset": "HKD", "amount": "1.001"}, "invalid_amount"),
        ({"asset": "HKD", "amount": "1e2"}, "invalid_amount"),
        ({"asset": "HKD", "amount": "NaN"}, "invalid_amount"),
        ({"asset": "HKD", "amount": 5}, "invalid_amount"),
        ({"asset": "HKD", "amount": 5.5}, "invalid_amount"),
        ({"asset": "HKD", "amount": "3402823669209384634633746074317682114.56"}, "invalid_amount"),
        ({"asset": "DOGE", "amount": "1.00"}, "unknown_asset"),
        ({"asset": "HKD", "amount": "1.00", "to": "nobody@example.com"}, "recipient_not_found"),
        ({"asset": "HKD", "amount": "50.00"}, "insufficient_funds"),
    ],
)
def test_bad_transfers_are_refused_and_write_nothing(client, pg_db, body, code):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("10.00")
    before = transfer_count(pg_db)
    response = alice.post("/v1/transfers", {"to": bob.email} | body)
    assert_error(response, 404 if code == "recipient_not_found" else 422, code)
    assert transfer_count(pg_db) == before
    assert alice.balance()["total"] == "10.00"


def test_cross_region_and_self_transfers_are_refused(client, pg_db):
    alice, carol = signup(client, "Alice", "HK"), signup(client, "Carol", "CN")
    alice.topup("10.00")
    before = transfer_count(pg_db)
    assert_error(
        alice.post("/v1/transfers", {"to": carol.email, "asset": "HKD", "amount": "1.00"}),
        400,
        "cross_region_transfer",
    )
    assert_error(
        alice.post("/v1/transfers", {"to": alice.email, "asset": "HKD", "amount": "1.00"}),
        400,
        "same_account",
    )
    assert transfer_count(pg_db) == before


def test_malformed_and_oversized_requests(client, app):
    alice = signup(client, "Alice")
    headers = alice.headers("k1") | {"Content-Type": "application/json"}
    assert_error(
        client.post("/v1/topups", content=b'{"asset": "HKD",', headers=headers),
        400,
        "malformed_json",
    )
    assert_error(
        client.post("/v1/topups", json=["not", "an", "object"], headers=headers),
        422,
        "validation_error",
    )
    assert_error(
        client.post(
            "/v1/topups",
            json={"asset": "HKD", "amount": "1.00", "channel": "carrier-pigeon"},
            headers=headers,
        ),
        422,
        "unknown_channel",
    )
    huge = b'{"pad": "' + b"x" * (app.state.settings.request_body_max_bytes + 1) + b'"}'
    assert_error(client.post("/v1/topups", content=huge, headers=headers), 413, "payload_too_large")
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/v1/balances"), 405, "method_not_allowed")
    assert alice.balance()["total"] is None


def test_missing_bad_and_expired_tokens(client, pg_db):
    assert_error(client.get("/v1/balances"), 401, "unauthorized")
    assert_error(
        client.get("/v1/balances", headers={"Authorization": "Bearer sr_forged"}),
        401,
        "invalid_token",
    )
    assert_error(
        client.get("/v1/balances", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
    )
    alice = signup(client, "Alice")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            update(AuthToken)
            .where(AuthToken.user_id == alice.user_id)
            .values(expires_at=db.utcnow() - timedelta(seconds=1))
        )
    assert_error(alice.get("/v1/balances"), 401, "token_expired")
    assert_error(
        client.post(
            "/v1/topups",
            json={"asset": "HKD", "amount": "1.00", "channel": "sandbox"},
            headers={"Idempotency-Key": "k"},
        ),
        401,
        "unauthorized",
    )


def test_operator_batch_all_or_nothing_per_linked_group(client, pg_db):
    integration, admin = ledger_integration(client, pg_db), operator(client, pg_db)
    accounts = []
    for i in range(3):
        made = integration.post(
            "/v1/admin/ledger/accounts",
            {
                "owner_type": "operator",
                "owner_id": "ops",
                "kind": f"float_{i}",
                "asset": "HKD",
                "allow_negative": i == 0,
            },
        )
        assert made.status_code == 201, made.text
        accounts.append(made.json()["id"])
    source, a, b = accounts
    transfers = [
        {"debit_account_id": source, "credit_account_id": a, "asset": "HKD", "amount": "10.00"},
        {
            "debit_account_id": a,
            "credit_account_id": b,
            "asset": "HKD",
            "amount": "8.00",
            "linked": True,
        },
        {"debit_account_id": a, "credit_account_id": b, "asset": "HKD", "amount": "3.00"},
        {
            "id": "ops-1",
            "debit_account_id": a,
            "credit_account_id": b,
            "asset": "HKD",
            "amount": "2.00",
        },
    ]
    result = integration.post("/v1/admin/ledger/transfers", {"transfers": transfers}).json()
    assert [r["status"] for r in result["results"]] == ["created", "failed", "failed", "created"]
    assert result["results"][2]["error"]["code"] == "insufficient_funds"
    assert (result["created"], result["failed"]) == (2, 2)
    replay = integration.post("/v1/admin/ledger/transfers", {"transfers": transfers[3:]})
    assert replay.json()["results"][0]["status"] == "exists"
    account = admin.get(f"/v1/admin/ledger/accounts/{a}").json()
    assert (account["total"], account["available"]) == ("8.00", "8.00")
    statement = admin.get(f"/v1/admin/ledger/accounts/{a}/statement").json()
    assert [i["balance_after"] for i in statement["items"]] == ["8.00", "10.00"]


def test_batch_refuses_oversize_and_callers_without_a_ledger_key(client, pg_db):
    integration, alice = ledger_integration(client, pg_db), signup(client, "Alice")
    admin = operator(client, pg_db)
    one = {"debit_account_id": 1, "credit_account_id": 2, "asset": "HKD", "amount": "0.01"}
    before = transfer_count(pg_db)
    assert_error(
        integration.post("/v1/admin/ledger/transfers", {"transfers": [one] * 8001}),
        400,
        "batch_too_large",
    )
    for person in (alice, admin):  # people, whatever their role, use adjustments (R-SEC-10)
        assert_error(
            person.post("/v1/admin/ledger/transfers", {"transfers": [one]}, key=None),
            403,
            "service_key_required",
        )
    assert_error(
        client.post("/v1/admin/ledger/transfers", json={"transfers": [one]}),
        401,
        "api_key_required",
    )
    bad = integration.post("/v1/admin/ledger/transfers", {"transfers": [one | {"amount": "0.001"}]})
    assert_error(bad, 422, "invalid_amount")
    unknown = integration.post(
        "/v1/admin/ledger/transfers", {"transfers": [one | {"debit_account_id": 424242}]}
    ).json()
    assert unknown["results"][0]["error"]["code"] == "account_not_found"
    assert transfer_count(pg_db) == before
