"""Merchant charges through the group-commit batcher (issue #13's benchmark path): a payment
code is accepted once however many terminals race with it, one payer's concurrent charges
never overdraw nor pass a day limit, a charge refused inside a batch leaves the others of the
batch alone (and gives its code back), a terminal's retries answer its first charge, and the
worked example still holds. Concurrent requests go to a real server (``live_url``); every test
ends with the ledger's invariants holding."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.ledger import reports
from strongroom.ledger.models import Transfer
from strongroom.merchants.models import Charge
from strongroom.movements.batcher import Batcher
from strongroom.notify.models import OutboxEmail
from strongroom.paycodes import domain as paycode_domain
from strongroom.paycodes.models import CodeUse
from strongroom.settings import LimitsSettings
from tests.api.conftest import Caller, make_settings, operator, signup
from tests.api.merchant_support import (
    Terminal,
    fee_balance,
    merchant_balance,
    onboard,
    terminal,
)

DEVICES_MAX = 20


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    """The API with room for one device per concurrent charge of a payer."""
    settings = make_settings(pg_db)
    codes = settings.payment_codes.model_copy(update={"devices_per_user_max": DEVICES_MAX})
    return create_app(settings.model_copy(update={"payment_codes": codes}), pg_db)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def fresh_code(user: Caller) -> str:
    """A code of a new device of ``user``, computed from its secret as the phone would."""
    made = user.post("/v1/devices", {"name": f"phone {uuid.uuid4().hex[:6]}"}, key=None)
    assert made.status_code == 201, made.text
    device = made.json()
    return paycode_domain.code(
        issuer_id=device["issuer_id"],
        locator=int(device["locator"]),
        secret=paycode_domain.secret_bytes(device["secret"]),
        step=int(time.time()) // device["step_s"],
    )


def race(live_url: str, till: Terminal, bodies: list[tuple[dict[str, Any], str]]) -> list[Any]:
    """POST every (body, Idempotency-Key) at once from its own thread; the answers, in order."""
    answers: list[Any] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def charge(index: int) -> None:
        body, key = bodies[index]
        with httpx.Client(base_url=live_url, timeout=60) as http:
            start.wait()
            answer = http.post(
                "/v1/merchant/charges",
                json=body,
                headers={"X-Api-Key": till.key, "Idempotency-Key": key},
            )
            answers[index] = (answer.status_code, answer.json())

    threads = [threading.Thread(target=charge, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def codes_of(answers: list[Any]) -> list[str]:
    return sorted("created" if status == 201 else body["error"]["code"] for status, body in answers)


def rows(engine: Engine, model: Any, *where: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
        )


def test_sixteen_terminals_racing_one_code_charge_it_once(client, pg_db, live_url):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("100.00")
    code = fresh_code(alice)
    body = {"payment_code": code, "amount": "10.00", "asset": "HKD"}
    answers = race(live_url, till, [(body, uuid.uuid4().hex) for _ in range(16)])
    assert codes_of(answers) == ["created"] + ["payment_code_used"] * 15
    assert all(status == 409 for status, _ in answers if status != 201)
    assert alice.balance()["total"] == "90.00"
    assert merchant_balance(pg_db, merchant_id) == 10_00 - 8
    assert fee_balance(pg_db) == 8
    assert rows(pg_db, Charge) == 1 and rows(pg_db, CodeUse) == 1
    assert rows(pg_db, Transfer, Transfer.code == "merchant_payment") == 1


def test_one_payer_s_racing_charges_never_overdraw(client, pg_db, live_url):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("10.00")
    bodies = [
        ({"payment_code": fresh_code(alice), "amount": "1.00", "asset": "HKD"}, uuid.uuid4().hex)
        for _ in range(16)
    ]
    answers = race(live_url, till, bodies)
    assert codes_of(answers) == ["created"] * 10 + ["insufficient_funds"] * 6
    assert alice.balance()["total"] == "0.00"
    assert merchant_balance(pg_db, merchant_id) == 10_00  # 80 bps of 1.00 rounds down to 0
    # a refused charge gave its code back: the same code pays once the money is there
    refused = [
        body for (body, _), (status, _) in zip(bodies, answers, strict=True) if status != 201
    ]
    alice.topup("1.00")
    assert till.charge(refused[0]).status_code == 201
    assert rows(pg_db, CodeUse) == 11


def test_one_payer_s_racing_charges_never_pass_the_day_limit(app, client, pg_db, live_url):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("100.00")  # under the roomy limits; the day limit of 5.00 applies from here
    limits = LimitsSettings(
        tiers={
            tier: {
                "per_transaction": None,
                "per_day": "5.00",
                "per_year": None,
                "max_balance": None,
                "withdrawals_per_day": None,
                "crypto_withdrawals_24h_btc": None,
            }
            for tier in ("unverified", "primary", "advanced", "institutional")
        },
        tn_hours=0,
        tn_high_risk_hours=0,
    )
    app.state.settings = app.state.settings.model_copy(update={"limits": limits})
    bodies = [
        ({"payment_code": fresh_code(alice), "amount": "1.00", "asset": "HKD"}, uuid.uuid4().hex)
        for _ in range(16)
    ]
    answers = race(live_url, till, bodies)
    assert codes_of(answers) == ["created"] * 5 + ["limit_exceeded"] * 11
    assert alice.balance()["total"] == "95.00"
    assert merchant_balance(pg_db, merchant_id) == 5_00


class GatedBatcher(Batcher):
    """A batcher that applies nothing until ``size`` jobs are queued, then all of them in ONE
    batch (the next ones one by one): forces charges into the same transaction."""

    def __init__(self, factory: Any, size: int) -> None:
        self.size = size
        super().__init__(factory)

    def _run(self) -> None:
        jobs: list[Any] = []
        while True:
            job = self._queue.get()
            if job is None:
                if jobs:
                    self._process(jobs)
                return
            jobs.append(job)
            if len(jobs) >= self.size:
                self._process(jobs)
                jobs, self.size = [], 1


@pytest.fixture
def gated(app: FastAPI) -> Callable[[int], None]:
    def gate(size: int) -> None:
        app.state.batcher.close()
        app.state.batcher = GatedBatcher(app.state.session_factory, size)

    return gate


def test_refusals_inside_a_batch_leave_the_other_charges_alone(client, pg_db, live_url, gated):
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("100.00")
    bob.topup("5.00")
    alices, bobs = fresh_code(alice), fresh_code(bob)
    bobs_second = fresh_code(bob)
    gated(5)
    answers = race(
        live_url,
        till,
        [
            ({"payment_code": alices, "amount": "100.00", "asset": "HKD"}, "a1"),
            ({"payment_code": alices, "amount": "100.00", "asset": "HKD"}, "a2"),  # code reused
            ({"payment_code": bobs, "amount": "5.00", "asset": "HKD"}, "b1"),
            ({"payment_code": bobs_second, "amount": "5.00", "asset": "HKD"}, "b2"),  # no money
            ({"payment_code": alices, "amount": "100.00", "asset": "HKD"}, "a1"),  # a retry
        ],
    )
    a1, a2, b1, b2, a1_again = answers
    assert a1 == a1_again  # the retry answers what its first try answered
    assert codes_of([a1, a2]) == ["created", "payment_code_used"]
    assert codes_of([b1, b2]) == ["created", "insufficient_funds"]
    assert alice.balance()["total"] == "0.00" and bob.balance()["total"] == "0.00"
    assert merchant_balance(pg_db, merchant_id) == 105_00 - 80 - 4
    assert fee_balance(pg_db) == 84
    assert rows(pg_db, Charge) == 2 and rows(pg_db, CodeUse) == 2
    assert rows(pg_db, OutboxEmail, OutboxEmail.template_id == "merchants.payment_receipt") == 2
    # bob's refused charge gave its code back and stored nothing under its key
    bob.topup("5.00")
    code, key = (bobs_second, "b2") if b1[0] == 201 else (bobs, "b1")
    again = till.charge({"payment_code": code, "amount": "5.00", "asset": "HKD"}, key)
    assert again.status_code == 201, again.text
    assert bob.balance()["total"] == "0.00"


def test_the_worked_example_and_a_replayed_key(client, pg_db):
    """HK$100 at 80 bps: payer -100.00, merchant +99.20, fee account +0.80; the same
    Idempotency-Key again answers the same charge and moves nothing."""
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("150.00")
    body = {"payment_code": fresh_code(alice), "amount": "100.00", "asset": "HKD"}
    first = till.charge(body, "worked")
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "completed" and first.json()["id"].startswith("ch_")
    assert alice.balance()["total"] == "50.00"
    assert merchant_balance(pg_db, merchant_id) == 99_20 and fee_balance(pg_db) == 80
    moved = rows(pg_db, Transfer)
    again = till.charge(body, "worked")
    assert (again.status_code, again.json()) == (201, first.json())
    assert rows(pg_db, Transfer) == moved and rows(pg_db, Charge) == 1
    assert alice.balance()["total"] == "50.00"
    read = till.get(f"/v1/merchant/charges/{first.json()['id']}").json()
    assert (read["amount"], read["fee"], read["net"]) == ("100.00", "0.80", "99.20")
