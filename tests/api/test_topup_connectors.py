"""Issue #12 item 1, top-ups (R-FUND-1): connectors that confirm later, signed webhooks, the store
terminal's cash confirmation and the sandbox's failure paths.

For every connector: happy path, failure, timeout, duplicate webhook, forged signature, replayed
old webhook: the money moves exactly once or not at all, the user sees the right status, and
every test ends with ``strongroom ledger check`` passing and reconcile finding no break
(``settled``)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db, worker
from strongroom.app import create_app
from strongroom.funding import topups, webhooks
from strongroom.funding.models import Topup
from strongroom.ledger.models import Transfer
from strongroom.settings import RateLimitRule, Settings
from tests.api.conftest import Caller, make_settings, signup
from tests.api.connector_support import (
    CARD_SECRET,
    FPS_SECRET,
    connector_settings,
    deliveries,
    notification,
    send_webhook,
    settled,
    topup_row,
)
from tests.api.service_keys import make_key
from tests.web.conftest import fingerprint


@pytest.fixture
def settings(pg_db: Engine) -> Settings:
    return connector_settings(pg_db)


@pytest.fixture
def app(pg_db: Engine, settings: Settings) -> FastAPI:
    return create_app(settings, pg_db)


def _request(user: Caller, channel: str, amount: str = "100.00", asset: str = "HKD") -> dict:
    response = user.post("/v1/topups", {"asset": asset, "amount": amount, "channel": channel})
    assert response.status_code == 201, response.text
    body: dict = response.json()
    return body


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error: dict = response.json()["error"]
    assert error["code"] == code, error
    return error


def _status(user: Caller, topup_id: str) -> str:
    response = user.get(f"/v1/topups/{topup_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def _transfers(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Transfer)).scalar_one())


# --------------------------------------------------------------------------- FPS and card


@pytest.mark.parametrize("channel", ["fps", "card"])
def test_webhook_connector_happy_path_credits_what_arrived_once(
    client: TestClient, pg_db: Engine, settings: Settings, channel: str
) -> None:
    alice = signup(client, "Alice")
    opened = _request(alice, channel, "100.00")
    assert opened["status"] == "pending"
    assert opened["channel"] == channel and opened["amount"] == "100.00"
    expected = {"fps": "reference", "card": "card_session"}[channel]
    assert opened["instruction"] == expected
    assert opened["reference"] and opened["expires_at"]
    if channel == "fps":
        assert opened["reference"].startswith("SR") and len(opened["reference"]) == 12
    assert alice.balance()["total"] is None

    body = notification(opened["reference"], amount="99.50")  # what actually arrived
    credited = send_webhook(client, channel, body)
    assert credited.status_code == 200, credited.text
    assert credited.json() == {
        "outcome": "credited",
        "topup_id": opened["id"],
        "status": "completed",
    }
    assert alice.balance()["total"] == "99.50"
    shown = alice.get(f"/v1/topups/{opened['id']}").json()
    assert shown["status"] == "completed" and shown["received_amount"] == "99.50"

    again = send_webhook(client, channel, body)  # the same notification delivered twice
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    late_failure = send_webhook(client, channel, notification(opened["reference"], "failed"))
    assert late_failure.status_code == 200 and late_failure.json()["outcome"] == "ignored"
    assert alice.balance()["total"] == "99.50"
    assert _status(alice, opened["id"]) == "completed"

    stored = deliveries(pg_db)
    assert [d.outcome for d in stored] == ["credited", "duplicate", "ignored"]
    assert all(d.signature_ok and d.connector == channel for d in stored)
    assert stored[0].body == body.decode()
    assert "Strongroom-Signature" in stored[0].headers_json
    row = topup_row(pg_db, opened["id"])
    assert row.transfer_id == topups.transfer_id_of(opened["id"])
    settled(pg_db, settings)


@pytest.mark.parametrize("channel", ["fps", "card"])
def test_a_failed_topup_moves_nothing_and_a_later_confirmation_is_refused(
    client: TestClient, pg_db: Engine, settings: Settings, channel: str
) -> None:
    bob = signup(client, "Bob")
    opened = _request(bob, channel)
    failed = send_webhook(client, channel, notification(opened["reference"], "failed"))
    assert failed.status_code == 200 and failed.json()["outcome"] == "failed"
    assert _status(bob, opened["id"]) == "failed"
    before = _transfers(pg_db)
    late = send_webhook(client, channel, notification(opened["reference"], event_id="evt_2"))
    _error(late, 409, "topup_already_failed")
    assert _transfers(pg_db) == before
    assert bob.balance()["total"] is None
    assert deliveries(pg_db)[-1].outcome == "refused:topup_already_failed"  # kept
    settled(pg_db, settings)


@pytest.mark.parametrize("channel", ["fps", "card"])
def test_a_topup_nobody_confirms_expires_and_moves_nothing(
    client: TestClient, pg_db: Engine, settings: Settings, channel: str
) -> None:
    carol = signup(client, "Carol")
    opened = _request(carol, channel)
    factory = db.make_session_factory(pg_db)
    with db.unit_of_work(factory) as session:  # nothing is due yet
        assert topups.expire(session=session) == 0
    validity = getattr(settings.funding, channel).validity_s
    with db.unit_of_work(factory) as session:
        later = db.utcnow() + timedelta(seconds=validity + 1)
        assert topups.expire(session=session, now=later) == 1
    assert _status(carol, opened["id"]) == "expired"
    assert carol.balance()["total"] is None
    settled(pg_db, settings)


def test_a_forged_signature_is_refused_stored_and_moves_nothing(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    dave = signup(client, "Dave")
    opened = _request(dave, "fps")
    body = notification(opened["reference"])
    before = _transfers(pg_db)
    forged = send_webhook(client, "fps", body, secret="a-guessed-secret")
    _error(forged, 401, "invalid_signature")
    other_connector = send_webhook(client, "fps", body, secret=CARD_SECRET)
    _error(other_connector, 401, "invalid_signature")
    stamp = str(int(time.time()))
    signed_small = webhooks.sign(FPS_SECRET, stamp, body)
    tampered = client.post(  # the signature of another body: the amount was changed
        "/v1/webhooks/fps",
        content=notification(opened["reference"], amount="100000.00"),
        headers={webhooks.TIMESTAMP_HEADER: stamp, webhooks.SIGNATURE_HEADER: signed_small},
    )
    _error(tampered, 401, "invalid_signature")
    unsigned = client.post("/v1/webhooks/fps", content=body)
    _error(unsigned, 400, "signature_missing")
    garbage = send_webhook(client, "fps", body, signature="sha256=00")
    _error(garbage, 401, "invalid_signature")
    not_a_time = client.post(
        "/v1/webhooks/fps",
        content=body,
        headers={webhooks.TIMESTAMP_HEADER: "yesterday", webhooks.SIGNATURE_HEADER: "sha256=00"},
    )
    _error(not_a_time, 400, "invalid_timestamp")
    assert _transfers(pg_db) == before
    assert _status(dave, opened["id"]) == "pending"
    stored = deliveries(pg_db)
    assert len(stored) == 6 and not any(d.signature_ok for d in stored)
    assert {d.outcome for d in stored} == {
        "refused:invalid_signature",
        "refused:signature_missing",
        "refused:invalid_timestamp",
    }
    settled(pg_db, settings)


def test_a_replayed_old_webhook_is_refused_and_the_fresh_one_credits_once(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    erin = signup(client, "Erin")
    opened = _request(erin, "card", "40.00")
    body = notification(opened["reference"], amount="40.00")
    old = int(time.time()) - settings.funding.webhook_tolerance_s - 5
    replayed = send_webhook(client, "card", body, timestamp=old)
    _error(replayed, 400, "timestamp_outside_window")
    future = send_webhook(client, "card", body, timestamp=int(time.time()) + 3600)
    _error(future, 400, "timestamp_outside_window")
    fresh = send_webhook(client, "card", body)
    assert fresh.status_code == 200 and fresh.json()["outcome"] == "credited"
    assert erin.balance()["total"] == "40.00"
    again_old = send_webhook(client, "card", body, timestamp=old)
    _error(again_old, 400, "timestamp_outside_window")
    assert erin.balance()["total"] == "40.00"
    stored = deliveries(pg_db)
    assert [d.signature_ok for d in stored] == [True, True, True, True]  # signed, but stale
    settled(pg_db, settings)


def test_concurrent_duplicate_webhooks_credit_exactly_once(
    live_url: str, pg_db: Engine, settings: Settings
) -> None:
    with httpx.Client(base_url=live_url, timeout=30) as http:
        frank = signup(http, "Frank", engine=pg_db)
        opened = _request(frank, "fps", "250.00")
        body = notification(opened["reference"], amount="250.00")
        outcomes: list[str] = []
        lock = threading.Lock()

        def deliver() -> None:
            with httpx.Client(base_url=live_url, timeout=30) as own:
                response = send_webhook(own, "fps", body)
                assert response.status_code == 200, response.text
                with lock:
                    outcomes.append(response.json()["outcome"])

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["credited"] + ["duplicate"] * 7
        assert frank.balance()["total"] == "250.00"
    settled(pg_db, settings)


def test_bad_webhooks_are_clear_4xx_and_move_nothing(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    gina = signup(client, "Gina")
    opened = _request(gina, "fps")
    before = _transfers(pg_db)
    _error(send_webhook(client, "paypal", b"{}", secret="x"), 404, "unknown_connector")
    _error(send_webhook(client, "fps", b"not json"), 422, "invalid_webhook")
    _error(send_webhook(client, "fps", b"[1, 2]"), 422, "invalid_webhook")
    missing_field = b'{"event_id": "e", "reference": "r", "status": "confirmed"}'
    _error(send_webhook(client, "fps", missing_field), 422, "invalid_webhook")
    wrong_status = notification(opened["reference"], status="maybe")
    _error(send_webhook(client, "fps", wrong_status), 422, "invalid_webhook")
    unknown = notification("SRNOSUCHREF1")
    _error(send_webhook(client, "fps", unknown), 404, "topup_not_found")
    wrong_asset = notification(opened["reference"], asset="USD")
    _error(send_webhook(client, "fps", wrong_asset), 422, "asset_mismatch")
    for amount in ("-1.00", "0", "1.234", "abc"):
        bad = notification(opened["reference"], amount=amount)
        refused = send_webhook(client, "fps", bad)
        assert refused.status_code == 422, (amount, refused.text)
    other_channel = send_webhook(client, "card", notification(opened["reference"]))
    _error(other_channel, 404, "topup_not_found")  # an FPS reference is not a card session
    assert _transfers(pg_db) == before
    assert _status(gina, opened["id"]) == "pending"
    settled(pg_db, settings)


def test_webhooks_are_rate_limited_per_address(pg_db: Engine) -> None:
    settings = connector_settings(pg_db)
    limits = settings.rate_limits.model_copy(
        update={"enabled": True, "webhooks_per_address": RateLimitRule(limit=2, window_s=60)}
    )
    settings = settings.model_copy(update={"rate_limits": limits, "rate_limits_enabled": None})
    with TestClient(create_app(settings, pg_db)) as client:
        for _ in range(2):
            _error(send_webhook(client, "fps", b"{}"), 422, "invalid_webhook")
        refused = send_webhook(client, "fps", b"{}")
        error = _error(refused, 429, "rate_limited")
        assert error["details"]["rule"] == "webhooks_per_address"
        assert "retry-after" in refused.headers


# --------------------------------------------------------------------------- store cash


def test_store_cash_barcode_confirmed_by_the_terminal_once(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    hana = signup(client, "Hana")
    opened = _request(hana, "store_cash", "300.00")
    assert opened["instruction"] == "barcode" and opened["status"] == "pending"
    barcode = opened["reference"]
    assert barcode.isdigit() and len(barcode) == 18
    left = db.utcnow() + timedelta(minutes=15) - _parse(opened["expires_at"])
    assert timedelta(0) <= left < timedelta(seconds=30)
    terminal = {"X-Api-Key": make_key(pg_db, scope="store_cash")}
    taken = {"barcode": barcode, "amount": "300.00", "asset": "HKD"}
    done = client.post("/v1/topups/store-cash/confirmations", json=taken, headers=terminal)
    assert done.status_code == 200, done.text
    assert done.json() == {"topup_id": opened["id"], "status": "completed", "outcome": "credited"}
    again = client.post("/v1/topups/store-cash/confirmations", json=taken, headers=terminal)
    assert again.json()["outcome"] == "duplicate"
    assert hana.balance()["total"] == "300.00"
    assert _status(hana, opened["id"]) == "completed"
    settled(pg_db, settings)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_store_cash_refusals_move_nothing(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    ivan = signup(client, "Ivan")
    opened = _request(ivan, "store_cash", "50.00")
    barcode = opened["reference"]
    path = "/v1/topups/store-cash/confirmations"
    taken = {"barcode": barcode, "amount": "50.00"}
    before = fingerprint(pg_db)
    _error(client.post(path, json=taken), 401, "api_key_required")
    _error(client.post(path, json=taken, headers=ivan.headers()), 403, "service_key_required")
    ledger_key = {"X-Api-Key": make_key(pg_db)}
    _error(client.post(path, json=taken, headers=ledger_key), 403, "insufficient_scope")
    terminal = {"X-Api-Key": make_key(pg_db, scope="store_cash")}
    after_keys = fingerprint(pg_db)
    for bad in ({"barcode": "123", "amount": "50.00"}, {"barcode": barcode, "amount": "-5"}):
        refused = client.post(path, json=bad, headers=terminal)
        assert refused.status_code in (404, 422), refused.text
    wrong_asset = {"barcode": barcode, "amount": "50.00", "asset": "USD"}
    _error(client.post(path, json=wrong_asset, headers=terminal), 422, "asset_mismatch")
    assert _without_audit(fingerprint(pg_db)) == _without_audit(after_keys)
    assert before["ledger_transfers"] == after_keys["ledger_transfers"]
    # past its 15 minutes, the barcode is refused even before the sweep marks it
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        row = session.get_one(Topup, opened["id"])
        row.expires_at = db.utcnow() - timedelta(seconds=1)
    _error(client.post(path, json=taken, headers=terminal), 410, "topup_expired")
    assert ivan.balance()["total"] is None
    settled(pg_db, settings)


def _without_audit(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k != "audit_events"}


# --------------------------------------------------------------------------- sandbox


def test_the_sandbox_failure_paths_by_the_amount(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    judy = signup(client, "Judy")
    plain = _request(judy, "sandbox", "12.00")
    assert plain["status"] == "completed"  # confirmed at once, as always
    failed = _request(judy, "sandbox", "12.77")
    assert failed["status"] == "failed" and _status(judy, failed["id"]) == "failed"
    twice = _request(judy, "sandbox", "12.99")
    assert twice["status"] == "completed"
    assert judy.balance()["total"] == "24.99"  # 12.00 + 12.99 once; 12.77 never
    timed_out = _request(judy, "sandbox", "12.88")
    assert timed_out["status"] == "pending"
    assert judy.balance()["total"] == "24.99"
    factory = db.make_session_factory(pg_db)
    swept = worker.sweep_once(factory, settings.idempotency, funding=settings.funding)
    assert swept.topups_polled == 1  # the next poll confirms it
    assert _status(judy, timed_out["id"]) == "completed"
    assert judy.balance()["total"] == "37.87"
    assert (
        worker.sweep_once(factory, settings.idempotency, funding=settings.funding).topups_polled
        == 0
    )
    assert judy.balance()["total"] == "37.87"
    settled(pg_db, settings)


def test_one_idempotency_key_is_one_pending_topup(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    kim = signup(client, "Kim")
    key = uuid.uuid4().hex
    body = {"asset": "HKD", "amount": "10.00", "channel": "fps"}
    first = kim.post("/v1/topups", body, key=key)
    second = kim.post("/v1/topups", body, key=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["reference"] == second.json()["reference"]
    other = kim.post("/v1/topups", {**body, "amount": "11.00"}, key=key)
    _error(other, 409, "idempotency_key_reused")
    _error(kim.post("/v1/topups", body, key=None), 422, "idempotency_key_required")
    with pg_db.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Topup)).scalar_one() == 1
    settled(pg_db, settings)


def test_bad_topup_requests_are_clear_4xx_and_write_nothing(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    lee = signup(client, "Lee")
    mia = signup(client, "Mia")
    before = fingerprint(pg_db)
    for amount in ("0", "-1.00", "1.001", "abc"):
        refused = lee.post("/v1/topups", {"asset": "HKD", "amount": amount, "channel": "fps"})
        assert refused.status_code == 422, (amount, refused.text)
    unknown = lee.post("/v1/topups", {"asset": "HKD", "amount": "1.00", "channel": "paypal"})
    error = _error(unknown, 422, "unknown_channel")
    assert error["details"]["channels"] == ["card", "fps", "sandbox", "store_cash"]
    _error(
        lee.post("/v1/topups", {"asset": "XXX", "amount": "1", "channel": "fps"}),
        422,
        "unknown_asset",
    )
    assert fingerprint(pg_db) == before
    opened = _request(lee, "fps")
    _error(mia.get(f"/v1/topups/{opened['id']}"), 404, "topup_not_found")
    _error(lee.get("/v1/topups/tu_nosuchtopup"), 404, "topup_not_found")
    assert client.get(f"/v1/topups/{opened['id']}").status_code == 401
    unverified = signup(client, "Ned", verify=False)
    refused = unverified.post("/v1/topups", {"asset": "HKD", "amount": "1.00", "channel": "fps"})
    _error(refused, 403, "email_unverified")
    settled(pg_db, settings)


def test_without_secrets_the_webhook_channels_are_not_offered(
    client: TestClient, pg_db: Engine
) -> None:
    """The plain test settings (no secrets): only the sandbox, and webhooks 404."""
    with TestClient(create_app(make_settings(pg_db), pg_db)) as plain:
        olga = signup(plain, "Olga")
        refused = olga.post("/v1/topups", {"asset": "HKD", "amount": "1.00", "channel": "fps"})
        assert _error(refused, 422, "unknown_channel")["details"] == {"channels": ["sandbox"]}
        _error(send_webhook(plain, "fps", b"{}"), 404, "unknown_connector")


def test_expiry_is_bounded_per_run_and_skips_a_row_another_worker_holds(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    pat = signup(client, "Pat")
    ids = [_request(pat, "card")["id"] for _ in range(3)]
    later = db.utcnow() + timedelta(hours=1)
    factory = db.make_session_factory(pg_db)
    with factory() as holder:  # another worker (or a notification) holds the first row
        holder.execute(select(Topup).where(Topup.id == ids[0]).with_for_update())
        with db.unit_of_work(factory) as session:
            assert topups.expire(session=session, now=later, limit=1) == 1
        with db.unit_of_work(factory) as session:  # not waiting for the held row: skipped
            assert topups.expire(session=session, now=later, limit=10) == 1
        assert _status(pat, ids[0]) == "pending"
        holder.rollback()
    with db.unit_of_work(factory) as session:
        assert topups.expire(session=session, now=later, limit=10) == 1
    assert [_status(pat, topup_id) for topup_id in ids] == ["expired"] * 3
    settled(pg_db, settings)


def test_a_delivery_with_nul_characters_is_stored(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    refused = send_webhook(client, "fps", b'{"event_id": "\x00"}')
    _error(refused, 422, "invalid_webhook")
    (stored,) = deliveries(pg_db)
    assert stored.body == '{"event_id": "\ufffd"}'
    settled(pg_db, settings)


def test_out_of_order_notifications_after_expiry_and_a_second_amount(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    """Money that arrives after the reference expired still arrived: credited once; a second
    confirmation with another amount is a duplicate and moves nothing."""
    quinn = signup(client, "Quinn")
    opened = _request(quinn, "fps", "60.00")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        assert topups.expire(session=session, now=db.utcnow() + timedelta(days=2)) == 1
    assert _status(quinn, opened["id"]) == "expired"
    late = send_webhook(client, "fps", notification(opened["reference"], amount="60.00"))
    assert late.json() == {"outcome": "credited", "topup_id": opened["id"], "status": "completed"}
    other = send_webhook(client, "fps", notification(opened["reference"], amount="600.00"))
    assert other.json()["outcome"] == "duplicate"
    assert quinn.balance()["total"] == "60.00"
    settled(pg_db, settings)
