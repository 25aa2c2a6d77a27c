"""P2P by email, phone or user id with receipts to both sides (issue #12 item 4, R-P2P-1): the
phone number on the user (E.164, unique, any common format, the user's region as default), the
recipient found by any of the three, a receipt email to each side with their anti-phishing
code written in the transfer's own transaction, none for a refusal or a replay."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.notify import outbox
from strongroom.notify.models import OutboxEmail
from tests.api.conftest import PASSWORD, Caller, signup

SENT, RECEIVED = "payments.p2p_sent", "payments.p2p_received"


def error_of(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return body["error"]


def put_phone(caller: Caller, phone: object) -> httpx.Response:
    return caller.client.put("/v1/me/phone", json={"phone": phone}, headers=caller.headers())


def receipts(engine: Engine) -> list[OutboxEmail]:
    with db.make_session_factory(engine)() as session:
        return list(
            session.scalars(
                select(OutboxEmail)
                .where(OutboxEmail.template_id.in_([SENT, RECEIVED]))
                .order_by(OutboxEmail.id)
            )
        )


def phones(engine: Engine) -> dict[str, str | None]:
    with db.make_session_factory(engine)() as session:
        return {row.id: row.phone for row in session.execute(select(User.id, User.phone))}


def ledger_ok(engine: Engine) -> None:
    with db.make_session_factory(engine)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


@pytest.mark.parametrize(
    ("region", "typed", "e164"),
    [
        ("HK", "5123 4567", "+85251234567"),
        ("HK", "+852 5123-4567", "+85251234567"),
        ("HK", "(852) 6123 4567", "+85261234567"),
        ("HK", "+86 138 0013 8000", "+8613800138000"),
        ("CN", "138 0013 8000", "+8613800138000"),
        ("CN", "+852 9123 4567", "+85291234567"),
    ],
)
def test_phone_numbers_are_stored_in_e164(client, region, typed, e164):
    alice = signup(client, "Alice", region=region)
    response = put_phone(alice, typed)
    assert response.status_code == 200, response.text
    assert response.json() == {"phone": e164}
    assert alice.get("/v1/me").json()["phone"] == e164


@pytest.mark.parametrize("typed", ["12345", "not a number", "+852 612345678", "", "5" * 41, 5])
def test_bad_phone_numbers_are_refused(client, pg_db, typed):
    alice = signup(client, "Alice")
    assert put_phone(alice, "5123 4567").status_code == 200
    before = phones(pg_db)
    response = put_phone(alice, typed)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] in ("invalid_phone", "validation_error")
    assert phones(pg_db) == before


def test_one_account_per_number_and_removal(client, pg_db):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    assert put_phone(alice, "5123 4567").status_code == 200
    assert put_phone(alice, "+85251234567").status_code == 200  # the same again: fine
    before = phones(pg_db)
    error_of(put_phone(bob, "+852 5123 4567"), 409, "phone_taken")
    assert phones(pg_db) == before
    assert client.put("/v1/me/phone", json={"phone": "51234567"}).status_code == 401
    removed = client.delete("/v1/me/phone", headers=alice.headers())
    assert removed.status_code == 204
    assert alice.get("/v1/me").json()["phone"] is None
    assert put_phone(bob, "51234567").status_code == 200  # free again


def test_send_by_phone_with_receipts_to_both_sides(client, pg_db):
    alice, bob = signup(client, "Alice Chan"), signup(client, "Bob Wong")
    assert put_phone(bob, "+852 5123 4567").status_code == 200
    code = bob.client.put(
        "/v1/me/anti-phishing-code",
        json={"code": "BOB42", "password": PASSWORD},
        headers=bob.headers(),
    )
    assert code.status_code == 204, code.text
    alice.topup("100.00")
    key = "receipt-test-key"
    body = {"to": "5123-4567", "asset": "HKD", "amount": "12.50", "note": "lunch"}
    sent = alice.post("/v1/transfers", body, key=key)
    assert sent.status_code == 201, sent.text
    transfer_id = sent.json()["id"]
    assert bob.balance()["total"] == "12.50"
    # both sides see it in their history
    (incoming,) = bob.get("/v1/transactions").json()["items"]
    assert incoming["transfer_id"] == transfer_id and incoming["direction"] == "in"
    outgoing = alice.get("/v1/transactions").json()["items"][0]
    assert outgoing["transfer_id"] == transfer_id and outgoing["direction"] == "out"

    to_alice, to_bob = receipts(pg_db)
    assert (to_alice.template_id, to_alice.to_address) == (SENT, alice.email)
    assert (to_bob.template_id, to_bob.to_address) == (RECEIVED, bob.email)
    # stored as subject and context, rendered when sent: what the mail worker will send
    for_alice, for_bob = outbox.content(to_alice), outbox.content(to_bob)
    for email in (for_alice, for_bob):
        assert "HKD 12.50" in email.subject
        assert transfer_id in email.text and transfer_id in email.html
        assert "TRANSFERID" not in email.text + email.html
        assert "lunch" in email.text
    assert "B** W**" in for_alice.text and "5123-4567" in for_alice.text
    assert "A** C**" in for_bob.text
    assert "BOB42" in for_bob.text and "BOB42" in for_bob.html  # the anti-phishing code
    assert "BOB42" not in for_alice.text

    # a replay of the key answers the same and sends no more receipts
    again = alice.post("/v1/transfers", body, key=key)
    assert again.status_code == 201 and again.json()["id"] == transfer_id
    assert len(receipts(pg_db)) == 2
    ledger_ok(pg_db)


def test_by_email_and_by_user_id_also_send_receipts(client, pg_db):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    alice.topup("10.00")
    for to in (bob.email.upper(), bob.user_id):
        response = alice.post("/v1/transfers", {"to": to, "asset": "HKD", "amount": "1.00"})
        assert response.status_code == 201, response.text
    assert [r.template_id for r in receipts(pg_db)] == [SENT, RECEIVED, SENT, RECEIVED]


def test_refused_transfers_send_no_receipt(client, pg_db):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    carol = signup(client, "Carol", region="CN")
    assert put_phone(bob, "51234567").status_code == 200
    assert put_phone(carol, "138 0013 8000").status_code == 200
    alice.topup("5.00")
    cases = [
        ({"to": "51234567", "amount": "6.00"}, 422, "insufficient_funds"),
        ({"to": "6123 4567", "amount": "1.00"}, 404, "recipient_not_found"),  # nobody's number
        ({"to": "12345", "amount": "1.00"}, 404, "recipient_not_found"),  # not a number
        # without the country code a HK sender's number is read as a HK one: not carol's
        ({"to": "138 0013 8000", "amount": "1.00"}, 404, "recipient_not_found"),
        ({"to": "+86 138 0013 8000", "amount": "1.00"}, 400, "cross_region_transfer"),
    ]
    for body, status, code in cases:
        error_of(alice.post("/v1/transfers", {"asset": "HKD", **body}), status, code)
    assert receipts(pg_db) == []
    assert alice.balance()["total"] == "5.00" and bob.balance()["total"] is None
    with db.make_session_factory(pg_db)() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(OutboxEmail)
                .where(
                    OutboxEmail.user_id == carol.user_id, OutboxEmail.template_id.like("payments.%")
                )
            )
            == 0
        )
    ledger_ok(pg_db)
