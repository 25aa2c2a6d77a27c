"""Merchant webhooks (R-MERCH-4): an event per charge and refund in the outbox, written with
the money (none for a refused charge); delivered to a real receiving server, retried with
backoff until it answers 2xx, each try signed so the merchant can verify it with the
documented algorithm (HMAC-SHA256 over ``t.body``) and nothing else."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db, worker
from strongroom.db import utcnow
from strongroom.ledger import reports
from strongroom.merchants import webhooks
from strongroom.merchants.models import WebhookEvent
from strongroom.settings import MerchantSettings
from tests.api.conftest import make_settings, operator, signup
from tests.api.merchant_support import code_of, onboard, terminal


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


class Receiver:
    """A merchant's endpoint: answers 503 to the first ``failures`` requests, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 503 if len(receiver.received) < receiver.failures else 200
                receiver.received.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(failures=2)
    yield found
    found.close()


def merchant_verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The merchant's side, from the documented algorithm alone."""
    parts = dict(p.split("=", 1) for p in headers["Strongroom-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_events_are_signed_and_retried_until_a_2xx(client, pg_db: Engine, receiver: Receiver):
    admin = operator(client, pg_db)
    till = terminal(admin, onboard(admin))
    set_up = client.put(
        "/v1/merchant/webhook", json={"url": receiver.url}, headers=till.headers(None)
    )
    assert set_up.status_code == 200, set_up.text
    secret = set_up.json()["secret"]
    alice = signup(client, "Alice")
    alice.topup("100.00")
    code = code_of(alice)
    refused = till.charge({"payment_code": code, "amount": "500.00", "asset": "HKD"})
    assert refused.status_code == 422
    paid = till.charge({"payment_code": code, "amount": "100.00", "asset": "HKD"})
    assert paid.status_code == 201, paid.text
    factory = db.make_session_factory(pg_db)
    with factory() as session:
        events = list(session.scalars(select(WebhookEvent)))
    assert [e.event_type for e in events] == ["charge.succeeded"]  # none for the refusal

    settings = MerchantSettings(webhook_backoff_base_s=10, webhook_backoff_max_s=60)
    secret_key = make_settings(pg_db).secret_key
    now = utcnow()
    for _ in range(2):  # the receiver answers 503 twice: the event waits, then tries again
        with db.unit_of_work(factory) as session:
            assert (
                webhooks.deliver_due(
                    session=session, settings=settings, secret_key=secret_key, now=now
                )
                == 0
            )
        with db.unit_of_work(factory) as session:  # not due again before the backoff ends
            assert (
                webhooks.deliver_due(
                    session=session, settings=settings, secret_key=secret_key, now=now
                )
                == 0
            )
        now += timedelta(seconds=61)
    with db.unit_of_work(factory) as session:
        delivered = webhooks.deliver_due(
            session=session, settings=settings, secret_key=secret_key, now=now
        )
    assert delivered == 1
    assert [status for _, _, status in receiver.received] == [503, 503, 200]
    with factory() as session:
        event = session.scalars(select(WebhookEvent)).one()
    assert (event.status, event.attempts, event.last_status_code) == ("delivered", 3, 200)
    for headers, body, _ in receiver.received:
        assert merchant_verifies(secret, headers, body)
        assert not merchant_verifies(secret, headers, body + b" ")
        assert not merchant_verifies("whsec_" + "0" * 64, headers, body)
        assert headers["Strongroom-Event-Id"] == event.id
    sent = json.loads(receiver.received[-1][1])
    assert sent["type"] == "charge.succeeded" and sent["data"]["id"] == paid.json()["id"]
    assert (sent["data"]["amount"], sent["data"]["fee"], sent["data"]["net"]) == (
        "100.00",
        "0.80",
        "99.20",
    )

    # a refund is an event too, delivered by the worker's sweep
    assert till.refund(paid.json()["id"], "40.00").status_code == 201
    swept = worker.sweep_once(
        factory, make_settings(pg_db).idempotency, hooks=worker.Hooks(settings, secret_key)
    )
    assert swept.webhooks_delivered == 1
    refund = json.loads(receiver.received[-1][1])
    assert refund["type"] == "refund.succeeded" and refund["data"]["fee_returned"] == "0.32"
    assert merchant_verifies(secret, receiver.received[-1][0], receiver.received[-1][1])

    # rotating the secret retires the old one
    rotated = client.put(
        "/v1/merchant/webhook",
        json={"url": receiver.url, "rotate": True},
        headers=till.headers(None),
    ).json()["secret"]
    assert rotated != secret


def test_an_unreachable_endpoint_backs_off_then_fails(client, pg_db: Engine):
    admin = operator(client, pg_db)
    till = terminal(admin, onboard(admin))
    cashier = terminal(admin, till.merchant_id, "cashier")
    refused = client.put(
        "/v1/merchant/webhook", json={"url": "http://127.0.0.1:9/x"}, headers=cashier.headers(None)
    )
    assert (
        refused.status_code == 403 and refused.json()["error"]["code"] == "merchant_role_forbidden"
    )
    bad = client.put("/v1/merchant/webhook", json={"url": "ftp://x"}, headers=till.headers(None))
    assert bad.status_code == 422
    client.put(
        "/v1/merchant/webhook", json={"url": "http://127.0.0.1:9/x"}, headers=till.headers(None)
    )
    alice = signup(client, "Alice")
    alice.topup("10.00")
    assert (
        till.charge({"payment_code": code_of(alice), "amount": "1.00", "asset": "HKD"}).status_code
        == 201
    )
    settings = MerchantSettings(
        webhook_backoff_base_s=1,
        webhook_backoff_max_s=4,
        webhook_attempts_max=3,
        webhook_timeout_s=1,
    )
    assert [webhooks.backoff_s(n, settings) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
    factory = db.make_session_factory(pg_db)
    now = utcnow()
    for _ in range(3):
        with db.unit_of_work(factory) as session:
            webhooks.deliver_due(session=session, settings=settings, secret_key="k" * 20, now=now)
        now += timedelta(seconds=5)
    with factory() as session:
        event = session.scalars(select(WebhookEvent)).one()
    assert (event.status, event.attempts, event.last_error) == ("failed", 3, "ConnectError")
