"""The fast lane of ``POST /v1/transfers`` (issue #14): a plain transfer is answered by the lane
(committed once, 201 ``{id, status}`` with the route's headers, both receipts); everything else
gets exactly the route's answer (compared with the lane switched off) and moves nothing; keys
stay exactly-once across the lane and the route; concurrent senders never overdraw or pass a
day limit."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.api.lane import FastLane, LaneCounts
from strongroom.app import create_app
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Transfer
from strongroom.movements.batcher import Batcher
from strongroom.notify.models import OutboxEmail
from strongroom.settings import LedgerLimits, LimitsSettings

from .conftest import Caller, make_settings, production_settings, signup


def _settings(engine: Engine, *, lane: bool, limits: LimitsSettings | None = None) -> object:
    settings = make_settings(engine)
    return settings.model_copy(
        update={
            "limits": limits or LimitsSettings(),  # SPEC's tier table and T+N holds
            "ledger": settings.ledger.model_copy(update={"fast_lane": lane}),
        }
    )


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    return create_app(_settings(pg_db, lane=True), pg_db)  # type: ignore[arg-type]


@pytest.fixture
def route_only(pg_db: Engine) -> Iterator[TestClient]:
    """The same database behind an app with the lane switched off: the route's answers."""
    app = create_app(_settings(pg_db, lane=False), pg_db)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _counts(client: TestClient) -> LaneCounts:
    counts: LaneCounts = client.app.state.lane_counts  # type: ignore[attr-defined]
    return counts


def _transfers(engine: Engine) -> int:
    with db.make_session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Transfer)) or 0


def _receipts(engine: Engine, transfer_id: str) -> list[tuple[str, str]]:
    with db.make_session_factory(engine)() as session:
        rows = session.execute(
            select(OutboxEmail.template_id, OutboxEmail.to_address).where(
                OutboxEmail.context.contains(transfer_id)
            )
        ).all()
    return sorted((row[0], row[1]) for row in rows)


def _pair(client: TestClient) -> tuple[Caller, Caller]:
    """Alice with HK$100 and Bob, who holds an HKD wallet (a plain transfer's recipient)."""
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("100.00")
    bob.topup("1.00")
    return alice, bob


def test_a_plain_transfer_is_committed_once_by_the_lane_with_the_routes_answer(
    client: TestClient, route_only: TestClient, pg_db: Engine
) -> None:
    alice, bob = _pair(client)
    body = {"to": bob.email, "asset": "HKD", "amount": "10.00", "note": "lunch"}
    answered = _counts(client).answered
    sent = alice.post("/v1/transfers", body, key="lane-1")
    assert sent.status_code == 201, sent.text
    assert _counts(client).answered == answered + 1
    assert set(sent.json()) == {"id", "status"} and sent.json()["status"] == "completed"
    by_route = replace(alice, client=route_only).post("/v1/transfers", body, key="route-1")
    assert by_route.status_code == 201
    assert dict(sent.headers) == dict(by_route.headers)  # the same content type and length
    assert (alice.balance()["total"], bob.balance()["total"]) == ("80.00", "21.00")
    # both receipts, once each, written with the transfer
    assert _receipts(pg_db, sent.json()["id"]) == sorted(
        [("payments.p2p_received", bob.email), ("payments.p2p_sent", alice.email)]
    )


def test_a_key_is_exactly_once_across_the_lane_and_the_route(
    client: TestClient, route_only: TestClient, pg_db: Engine
) -> None:
    alice, bob = _pair(client)
    body = {"to": bob.user_id, "asset": "HKD", "amount": "5.00"}
    first = alice.post("/v1/transfers", body, key="once")
    assert first.status_code == 201
    transfers = _transfers(pg_db)
    again = alice.post("/v1/transfers", body, key="once")  # the lane hands it to the route
    via_route = replace(alice, client=route_only).post("/v1/transfers", body, key="once")
    assert again.status_code == via_route.status_code == 201
    assert again.json() == via_route.json() == first.json()
    other = alice.post("/v1/transfers", {**body, "amount": "6.00"}, key="once")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert _transfers(pg_db) == transfers
    assert alice.balance()["total"] == "95.00"
    assert len(_receipts(pg_db, first.json()["id"])) == 2  # a replay sends no receipt again


def _raw(caller: Caller, content: bytes, **headers: str) -> Callable[[TestClient], httpx.Response]:
    def send(client: TestClient) -> httpx.Response:
        sent = {**caller.headers("raw-key"), "Content-Type": "application/json", **headers}
        answer: httpx.Response = client.post("/v1/transfers", content=content, headers=sent)
        return answer

    return send


def _json(caller: Caller, body: Mapping[str, object]) -> Callable[[TestClient], httpx.Response]:
    def send(client: TestClient) -> httpx.Response:
        return replace(caller, client=client).post("/v1/transfers", body, key="refused-key")

    return send


REFUSALS = [
    "bad_token",
    "revoked_token",
    "unverified",
    "unknown_recipient",
    "self",
    "cross_region",
    "insufficient_funds",
    "funds_locked",
    "limit_exceeded",
    "malformed_json",
    "bad_amount",
    "unknown_asset",
    "long_note",
    "no_key",
]


def _refusal(
    case: str, client: TestClient, alice: Caller, bob: Caller
) -> Callable[[TestClient], httpx.Response]:
    hkd = {"to": bob.email, "asset": "HKD", "amount": "1.00"}
    if case == "bad_token":
        return _json(replace(alice, token="not-a-token"), hkd)
    if case == "revoked_token":
        assert alice.post("/v1/transfers", hkd).status_code == 201  # the token worked
        assert client.post("/v1/auth/logout", headers=alice.headers()).status_code == 204
        return _json(alice, hkd)
    if case == "unverified":
        return _json(signup(client, "Uma", verify=False), hkd)
    if case == "unknown_recipient":
        return _json(alice, {**hkd, "to": "nobody@example.com"})
    if case == "self":
        return _json(alice, {**hkd, "to": alice.email})
    if case == "cross_region":
        return _json(alice, {**hkd, "to": signup(client, "Carol", "CN").email})
    if case == "insufficient_funds":
        return _json(alice, {**hkd, "amount": "100.01"})
    if case == "funds_locked":  # crypto bought through the sandbox is locked for T+N
        alice.topup("100.000000", "USDT")
        bob.topup("1.000000", "USDT")
        return _json(alice, {"to": bob.email, "asset": "USDT", "amount": "1.000000"})
    if case == "limit_exceeded":  # the unverified tier's day limit (HK$3,000) of sending
        alice.topup("2000.00")
        alice.topup("900.00")  # top-ups count towards a day limit of their own
        bob.topup("200.00")
        gift = {**hkd, "to": alice.email, "amount": "200.00"}
        assert bob.post("/v1/transfers", gift).status_code == 201
        for amount in ("2000.00", "900.00"):
            assert alice.post("/v1/transfers", {**hkd, "amount": amount}).status_code == 201
        return _json(alice, {**hkd, "amount": "100.01"})
    if case == "malformed_json":
        return _raw(alice, b'{"to": "x@example.com", "amount": ')
    if case == "bad_amount":
        return _json(alice, {**hkd, "amount": "1.005"})
    if case == "unknown_asset":
        return _json(alice, {**hkd, "asset": "XYZ"})
    if case == "long_note":
        return _json(alice, {**hkd, "note": "n" * 141})
    assert case == "no_key"
    return lambda c: c.post("/v1/transfers", json=hkd, headers=alice.headers())


@pytest.mark.parametrize("case", REFUSALS)
def test_every_refusal_is_the_routes_answer_and_moves_nothing(
    case: str, client: TestClient, route_only: TestClient, pg_db: Engine
) -> None:
    alice, bob = _pair(client)
    send = _refusal(case, client, alice, bob)
    transfers, answered = _transfers(pg_db), _counts(client).answered
    through_lane = send(client)
    by_route = send(route_only)
    assert through_lane.status_code >= 400, through_lane.text
    assert (through_lane.status_code, through_lane.json()) == (
        by_route.status_code,
        by_route.json(),
    )
    assert dict(through_lane.headers) == dict(by_route.headers)
    assert _transfers(pg_db) == transfers
    assert _counts(client).answered == answered  # the lane answered none of them


def test_concurrent_senders_never_overdraw(client: TestClient, pg_db: Engine) -> None:
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("10.00")
    bob.topup("1.00")
    body = {"to": bob.email, "asset": "HKD", "amount": "1.00"}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: alice.post("/v1/transfers", body), range(16)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * 10 + [422] * 6
    assert (alice.balance()["total"], bob.balance()["total"]) == ("0.00", "11.00")
    assert _counts(client).answered >= 1


def test_concurrent_senders_never_pass_the_day_limit(client: TestClient, pg_db: Engine) -> None:
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("1.00")
    bob.topup("1.00")
    for name in ("Carol", "Dave"):  # what a user receives is not limited: HK$4,001 in all
        giver = signup(client, name)
        giver.topup("2000.00")
        gift = {"to": alice.email, "asset": "HKD", "amount": "2000.00"}
        assert giver.post("/v1/transfers", gift).status_code == 201
    body = {"to": bob.email, "asset": "HKD", "amount": "250.00"}  # 16 x 250 = 4,000 > 3,000
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: alice.post("/v1/transfers", body), range(16)))
    refused = [answer.json()["error"]["code"] for answer in answers if answer.status_code != 201]
    assert refused == ["limit_exceeded"] * 4
    assert alice.balance()["total"] == "1001.00"
    assert _counts(client).answered >= 1


def _fund(engine: Engine, user_id: str, amount_minor: int) -> None:
    """HK$ credited from the bank omnibus (production has no sandbox channel)."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        wallet = ledger.user_wallet_id(session=session, user_id=user_id, asset="HKD")
        spec = TransferSpec(
            debit_account_id=bank,
            credit_account_id=wallet,
            asset="HKD",
            amount_minor=amount_minor,
            code="deposit",
        )
        ledger.transfer(session=session, spec=spec)


def test_in_production_the_lanes_answer_carries_the_security_headers(pg_db: Engine) -> None:
    settings = production_settings(pg_db)
    app = create_app(settings, pg_db)
    with TestClient(app, base_url="https://testserver") as client:
        alice = signup(client, "Alice", engine=pg_db)
        bob = signup(client, "Bob", engine=pg_db)
        _fund(pg_db, alice.user_id, 500)
        _fund(pg_db, bob.user_id, 1)
        sent = alice.post("/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "2.00"})
        assert sent.status_code == 201, sent.text
        assert _counts(client).answered == 1
        assert sent.headers["strict-transport-security"] == f"max-age={settings.hsts_max_age_s}"
        assert bob.balance()["total"] == "2.01"


def test_a_batch_that_does_not_answer_in_time_hands_the_request_to_the_route(pg_db: Engine):
    """The lane waits ``result_timeout_s`` for its batch, then lets the route answer (here a
    stand-in route; the real one answers the key as it stands): a stuck group commit never
    holds a request forever. The batch's own session never opens: nothing moves."""
    release, finished = threading.Event(), threading.Event()

    def stuck() -> None:
        release.wait(30)
        finished.set()
        raise RuntimeError("the test's batch never reaches a database")

    batcher = Batcher(stuck, result_timeout_s=0.3)  # type: ignore[arg-type]
    settings = _settings(pg_db, lane=True)
    state = SimpleNamespace(
        settings=settings,
        assets=settings.asset_registry(),  # type: ignore[attr-defined]
        batcher=batcher,
        lane_counts=LaneCounts(),
    )
    routed: list[bytes] = []

    async def route(scope, receive, send) -> None:
        routed.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 409, "headers": []})
        await send({"type": "http.response.body", "body": b"route"})

    lane = FastLane(route, state=state, max_bytes=4096, enabled=True, headers={})
    body = b'{"to":"u_someone","asset":"HKD","amount":"1.00"}'
    try:
        client = TestClient(lane)  # type: ignore[arg-type]  (no lifespan: the lane alone)
        started = time.monotonic()
        answer = client.post(
            "/v1/transfers",
            content=body,
            headers={
                "Authorization": "Bearer some-token",
                "Idempotency-Key": "k-timeout",
                "Content-Type": "application/json",
            },
        )
        waited = time.monotonic() - started
        assert not finished.is_set(), "answered before the batch ended: it did not wait for it"
    finally:
        release.set()
        batcher.close()
    assert (answer.status_code, answer.content) == (409, b"route")
    assert routed == [body]  # the route got the body the lane had read
    assert (state.lane_counts.answered, state.lane_counts.handed_back) == (0, 1)
    assert waited >= 0.3
    assert _transfers(pg_db) == 0


def test_the_server_runs_with_its_collector_thresholds_and_gives_them_back(pg_db: Engine):
    """``ledger.gc_thresholds`` hold while the app runs (issue #14: fewer collections while
    batches are in flight); the process's own come back when it stops. Bad ones are refused."""
    before = gc.get_threshold()
    settings = _settings(pg_db, lane=True)
    settings.ledger = settings.ledger.model_copy(update={"gc_thresholds": (12_345, 7, 9)})  # type: ignore[attr-defined]
    with TestClient(create_app(settings, pg_db)):  # type: ignore[arg-type]
        assert gc.get_threshold() == (12_345, 7, 9)
    assert gc.get_threshold() == before
    for bad in ((0, 10, 10), (700, 0, 10), (700, 10, 1001)):
        with pytest.raises(ValueError, match="gc thresholds"):
            LedgerLimits(gc_thresholds=bad)
    assert LedgerLimits().gc_thresholds == (20_000, 20, 20)
