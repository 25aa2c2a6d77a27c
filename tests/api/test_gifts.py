"""Gifts / red packets (issue #12 item 5, R-GIFT-1, R-TN-2): send into escrow, claim one share
each, the sender's list and detail, expiry refunds the rest exactly once, 16 concurrent claims
of the last share, T+N ``funds_locked``, bad input moves nothing. ``strongroom ledger check``
passes after every test (``ledger_checked``)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db, worker
from strongroom.gifts import service as gifts
from strongroom.gifts.models import Gift
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.settings import GiftSettings, IdempotencySettings
from tests.api.conftest import Caller, signup
from tests.web.conftest import fingerprint

KEYS = IdempotencySettings()


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    """``strongroom ledger check`` over what the test left: balanced, every balance right."""
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def send(caller: Caller, amount: str, shares: int, split: str = "equal", **extra: object):
    return caller.post(
        "/v1/gifts", {"asset": "HKD", "amount": amount, "shares": shares, "split": split, **extra}
    )


def escrow_total(engine: Engine, asset: str = "HKD") -> int:
    with db.make_session_factory(engine)() as session:
        account_id = ledger.operator_account(
            session=session, kind=gifts.ESCROW_KIND, asset=asset
        ).id
        return ledger.balance(session=session, account_id=account_id).total_minor


def test_send_claim_once_each_and_the_sender_sees_it(client: TestClient, pg_db: Engine):
    alice, bob, carol, dave, erin = (
        signup(client, n) for n in ("Alice", "Bob", "Carol", "Dave", "Erin")
    )
    alice.topup("20.00")
    sent = send(alice, "10.00", 3)
    assert sent.status_code == 201, sent.text
    body = sent.json()
    assert set(body) >= {"id", "claim_code", "expires_at"}
    code = body["claim_code"]
    assert len(code.replace("-", "")) == 20 and all(c in gifts.CODE_ALPHABET + "-" for c in code)
    assert body["claim_link"].endswith(f"/app/gifts/claim?code={code}")
    assert alice.balance()["total"] == "10.00"
    assert escrow_total(pg_db) == 1000

    got = bob.post("/v1/gifts/claim", {"claim_code": code}, key=None)
    assert got.status_code == 200, got.text
    assert got.json() == {"asset": "HKD", "amount": "3.34"}  # the remainder goes to the first
    again = bob.post("/v1/gifts/claim", {"claim_code": code.lower()}, key=None)
    assert again.status_code == 409 and again.json()["error"]["code"] == "gift_already_claimed"
    own = alice.post("/v1/gifts/claim", {"claim_code": code}, key=None)
    assert own.status_code == 403 and own.json()["error"]["code"] == "gift_own_claim"
    spaced = " ".join(code.replace("-", "").lower())  # typed by hand, any case and spacing
    assert (
        carol.post("/v1/gifts/claim", {"claim_code": spaced}, key=None).json()["amount"] == "3.33"
    )
    assert dave.post("/v1/gifts/claim", {"claim_code": code}, key=None).status_code == 200
    late = erin.post("/v1/gifts/claim", {"claim_code": code}, key=None)
    assert late.status_code == 409 and late.json()["error"]["code"] == "gift_exhausted"
    assert bob.balance()["total"] == "3.34" and carol.balance()["total"] == "3.33"
    assert erin.balance()["total"] is None
    assert escrow_total(pg_db) == 0

    listed = alice.get("/v1/gifts").json()
    assert [item["id"] for item in listed["items"]] == [body["id"]]
    item = listed["items"][0]
    assert item["status"] == "claimed" and item["claimed_shares"] == 3
    assert item["claimed_amount"] == "10.00" and item["claim_code"] == code
    detail = alice.get(f"/v1/gifts/{body['id']}").json()
    assert [p["amount"] for p in detail["parts"]] == ["3.34", "3.33", "3.33"]
    assert all(p["claimed"] for p in detail["parts"])
    # another user's gift is not there at all, nor in their list
    assert bob.get(f"/v1/gifts/{body['id']}").status_code == 404
    assert bob.get(f"/v1/gifts/{body['id']}").json()["error"]["code"] == "gift_not_found"
    assert bob.get("/v1/gifts").json()["items"] == []


def test_a_send_is_replayed_for_its_key_and_a_random_split_sums_exactly(client: TestClient):
    alice = signup(client, "Alice")
    alice.topup("1.00")
    payload = {"asset": "HKD", "amount": "1.00", "shares": 7, "split": "random"}
    first = alice.post("/v1/gifts", payload, key="gift-1")
    again = alice.post("/v1/gifts", payload, key="gift-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert alice.balance()["total"] == "0.00"  # moved once
    other = alice.post("/v1/gifts", {**payload, "shares": 6}, key="gift-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    parts = alice.get(f"/v1/gifts/{first.json()['id']}").json()["parts"]
    minors = [int(p["amount"].replace(".", "")) for p in parts]
    assert len(minors) == 7 and sum(minors) == 100 and min(minors) >= 1


def test_bad_input_is_refused_and_moves_nothing(client: TestClient, pg_db: Engine):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("5.00")
    before = fingerprint(pg_db)
    cases = [
        ({"amount": "0"}, 422, "invalid_amount"),
        ({"amount": "-1"}, 422, "invalid_amount"),
        ({"amount": "1.001"}, 422, "invalid_amount"),
        ({"amount": 1}, 422, "invalid_amount"),
        ({"asset": "XYZ"}, 422, "unknown_asset"),
        ({"shares": 0}, 422, "invalid_shares"),
        ({"shares": 101}, 422, "invalid_shares"),
        ({"amount": "0.02", "shares": 3}, 422, "gift_amount_too_small"),
        ({"amount": "6.00"}, 422, "insufficient_funds"),
        ({"asset": "USD"}, 422, "insufficient_funds"),  # no USD wallet at all
        ({"split": "fair"}, 422, "validation_error"),
    ]
    for change, status, code in cases:
        body = {"asset": "HKD", "amount": "1.00", "shares": 2, "split": "equal", **change}
        answer = alice.post("/v1/gifts", body)
        assert answer.status_code == status, (change, answer.text)
        assert answer.json()["error"]["code"] == code, change
    no_key = alice.post("/v1/gifts", {"asset": "HKD", "amount": "1.00", "shares": 1}, key=None)
    assert no_key.json()["error"]["code"] == "idempotency_key_required"
    for code, status, error in [
        ("not-a-code", 422, "invalid_claim_code"),
        ("OOOOO-IIIII-11111-00000", 422, "invalid_claim_code"),  # letters the alphabet avoids
        (gifts.new_code(), 404, "gift_not_found"),
    ]:
        answer = bob.post("/v1/gifts/claim", {"claim_code": code}, key=None)
        assert answer.status_code == status and answer.json()["error"]["code"] == error, code
    assert bob.post("/v1/gifts/claim", {"claim_code": ""}, key=None).status_code == 422
    assert bob.get("/v1/gifts/999").status_code == 404
    assert bob.get("/v1/gifts", cursor="nope").json()["error"]["code"] == "invalid_cursor"
    assert fingerprint(pg_db) == before
    assert alice.balance()["total"] == "5.00"


def test_an_unverified_user_neither_sends_nor_claims(client: TestClient, pg_db: Engine):
    alice = signup(client, "Alice")
    alice.topup("5.00")
    code = send(alice, "2.00", 2).json()["claim_code"]
    newcomer = signup(client, "Newcomer", verify=False)
    before = fingerprint(pg_db)
    refused = newcomer.post("/v1/gifts/claim", {"claim_code": code}, key=None)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "email_unverified"
    assert fingerprint(pg_db) == before


def test_a_gift_is_claimed_in_its_region_only(client: TestClient):
    alice, chen = signup(client, "Alice", region="HK"), signup(client, "Chen", region="CN")
    alice.topup("5.00")
    code = send(alice, "2.00", 2).json()["claim_code"]
    refused = chen.post("/v1/gifts/claim", {"claim_code": code}, key=None)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "cross_region_transfer"


def _lock(engine: Engine, user_id: str, amount_minor: int, days: int = 3) -> None:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        wallet = ledger.user_wallet_id(session=session, user_id=user_id, asset="HKD")
        ledger.lock(
            session=session,
            account_id=wallet,
            amount_minor=amount_minor,
            unlocks_at=db.utcnow() + timedelta(days=days),
        )


def test_locked_money_cannot_be_gifted(client: TestClient, pg_db: Engine):
    alice = signup(client, "Alice")
    alice.topup("100.00")
    _lock(pg_db, alice.user_id, 8000)  # 80.00 locked under T+N, 20.00 free
    before = fingerprint(pg_db)
    refused = send(alice, "50.00", 2)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "funds_locked"
    assert error["details"]["asset"] == "HKD" and error["details"]["locked"] == "80.00"
    assert error["details"]["unlocks_at"]
    assert fingerprint(pg_db) == before
    too_much = send(alice, "100.01", 2)  # more than is held at all
    assert too_much.json()["error"]["code"] == "insufficient_funds"
    assert send(alice, "20.00", 2).status_code == 201
    assert alice.balance()["total"] == "80.00"


def test_concurrent_gifts_cannot_both_spend_locked_money(live_url: str, pg_db: Engine):
    with httpx.Client(base_url=live_url, timeout=60) as http:
        alice = signup(http, "Alice", engine=pg_db)
        alice.topup("100.00")
        _lock(pg_db, alice.user_id, 8000)  # 20.00 free
        answers: list[httpx.Response] = []
        start = threading.Barrier(8)

        def one() -> None:
            with httpx.Client(base_url=live_url, timeout=60) as own:
                start.wait()
                caller = Caller(own, alice.token, alice.user_id, alice.email)
                answers.append(send(caller, "15.00", 3))

        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = Counter(
            a.json()["error"]["code"] if a.status_code != 201 else "created" for a in answers
        )
        assert codes == {"created": 1, "funds_locked": 7}
        assert alice.balance()["total"] == "85.00"


def test_sixteen_concurrent_claims_of_the_last_share_one_wins(live_url: str, pg_db: Engine):
    with httpx.Client(base_url=live_url, timeout=60) as http:
        alice = signup(http, "Alice", engine=pg_db)
        alice.topup("3.00")
        code = send(alice, "3.00", 2).json()["claim_code"]
        first = signup(http, "First", engine=pg_db)
        assert first.post("/v1/gifts/claim", {"claim_code": code}, key=None).status_code == 200
        claimers = [signup(http, f"Claimer {i}", engine=pg_db) for i in range(16)]
    answers: list[httpx.Response] = []
    start = threading.Barrier(16)

    def claim(who: Caller) -> None:
        with httpx.Client(base_url=live_url, timeout=60) as own:
            start.wait()
            answers.append(
                own.post(
                    "/v1/gifts/claim",
                    json={"claim_code": code},
                    headers={"Authorization": f"Bearer {who.token}"},
                )
            )

    threads = [threading.Thread(target=claim, args=(c,)) for c in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 409: 15}, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {
        "gift_exhausted"
    }
    assert escrow_total(pg_db) == 0
    with db.make_session_factory(pg_db)() as session:
        gift = session.scalars(select(Gift)).one()
        assert gift.status == "claimed" and gift.claimed_shares == 2
        assert gift.claimed_minor == 300


def test_expiry_refunds_the_rest_exactly_once(client: TestClient, pg_db: Engine):
    alice, bob, carol = signup(client, "Alice"), signup(client, "Bob"), signup(client, "Carol")
    alice.topup("10.00")
    sent = send(alice, "10.00", 3).json()
    assert (
        bob.post("/v1/gifts/claim", {"claim_code": sent["claim_code"]}, key=None).status_code == 200
    )
    factory = db.make_session_factory(pg_db)
    settings = GiftSettings()
    # before its time nothing happens
    assert worker.sweep_once(factory, KEYS, gift_settings=settings).gifts_expired == 0
    later = db.utcnow() + timedelta(hours=24, seconds=1)
    # two workers at once: the gift is expired (and refunded) once
    results: list[int] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        start.wait()
        results.append(
            worker.sweep_once(factory, KEYS, gift_settings=settings, now=later).gifts_expired
        )

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1]
    assert worker.sweep_once(factory, KEYS, gift_settings=settings, now=later).gifts_expired == 0
    assert alice.balance()["total"] == "6.66"  # 10.00 - 3.34 claimed by Bob
    assert escrow_total(pg_db) == 0
    detail = alice.get(f"/v1/gifts/{sent['id']}").json()
    assert detail["status"] == "expired" and detail["refunded_amount"] == "6.66"
    late = carol.post("/v1/gifts/claim", {"claim_code": sent["claim_code"]}, key=None)
    assert late.status_code == 409 and late.json()["error"]["code"] == "gift_expired"


def test_a_claim_after_the_time_is_refused_before_the_sweep(client: TestClient, pg_db: Engine):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("1.00")
    sent = send(alice, "1.00", 1).json()
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            Gift.__table__.update().values(expires_at=db.utcnow() - timedelta(seconds=1))
        )
    before = fingerprint(pg_db)
    late = bob.post("/v1/gifts/claim", {"claim_code": sent["claim_code"]}, key=None)
    assert late.status_code == 409 and late.json()["error"]["code"] == "gift_expired"
    assert fingerprint(pg_db) == before
