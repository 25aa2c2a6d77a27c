"""Issue #10, finding 3 over HTTP: a stolen bearer token alone takes nothing. Enrolling 2FA
(start or confirm), turning it off, new recovery codes, reading or changing the anti-phishing
code, changing the email or the password all need the password again (and the 2FA code when it
is on): without it they fail (status, code, no row written or changed); with it they work.
Guessing the password with the token signs that session out, and never locks the owner out of
signing in. R-SEC-11 over HTTP: an unverified email moves no money; sign-up of a taken email
answers as a new one."""

from __future__ import annotations

from typing import Any

import httpx
import pyotp
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.db import Base
from strongroom.identity.models import TotpFactor, User
from tests.api.conftest import PASSWORD, Caller, emailed_token, signup

ME = "/v1/me"


def state(engine: Engine, user_id: str) -> dict[str, Any]:
    """Every table's row count and what a takeover would change of the user: equal before and
    after means nothing was written or changed."""
    with db.make_session_factory(engine)() as session:
        user = session.get_one(User, user_id)
        factor = session.get(TotpFactor, user_id)
        return {
            "rows": {
                table.name: session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables
            },
            "user": (
                user.email,
                user.password_hash,
                user.anti_phishing_code,
                user.two_factor_enabled_at,
                user.withdrawals_frozen_until,
                user.email_verified_at,
            ),
            "factor": None if factor is None else (factor.secret_sealed, factor.confirmed_at),
        }


def call(caller: Caller, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return caller.client.request(method, path, json=body, headers=caller.headers())


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


# the changes a token thief would make, each as the thief sends it: the old shapes, no password
THEFTS = [
    ("POST", f"{ME}/2fa", {}),
    ("POST", f"{ME}/2fa/confirm", {"otp": "123456"}),
    ("POST", f"{ME}/2fa/disable", {"otp": "123456"}),
    ("POST", f"{ME}/2fa/recovery-codes", {"otp": "123456"}),
    ("POST", f"{ME}/anti-phishing-code/preview", {}),
    ("PUT", f"{ME}/anti-phishing-code", {"code": "Th1ef"}),
    ("DELETE", f"{ME}/anti-phishing-code", {}),
    ("PUT", f"{ME}/email", {"email": "thief@example.com"}),
    ("POST", f"{ME}/password", {"new_password": "the-thiefs-password-1"}),
]


def test_a_stolen_token_alone_changes_nothing(client, pg_db):
    alice = signup(client, "Alice")
    saved = call(alice, "PUT", f"{ME}/anti-phishing-code", {"code": "Ab12", "password": PASSWORD})
    assert saved.status_code == 204, saved.text
    before = state(pg_db, alice.user_id)
    for method, path, body in THEFTS:
        refused(call(alice, method, path, body), 403, "reauthentication_required")
    # the saved anti-phishing code cannot be read with the token either (no GET with a query)
    assert client.get(f"{ME}/anti-phishing-code/preview", headers=alice.headers()).status_code in (
        404,
        405,
    )
    assert state(pg_db, alice.user_id) == before
    assert alice.get(ME).json()["two_factor"] is False


def test_a_stolen_token_cannot_turn_off_2fa_or_take_new_codes_with_a_code_alone(client, pg_db):
    alice = signup(client, "Alice")
    secret = enable_2fa(alice)
    before = state(pg_db, alice.user_id)
    code = pyotp.TOTP(secret).now()  # even a code (say, phished) without the password
    for path in (f"{ME}/2fa/disable", f"{ME}/2fa/recovery-codes"):
        refused(call(alice, "POST", path, {"otp": code}), 403, "reauthentication_required")
    assert state(pg_db, alice.user_id) == before


def test_guessing_the_password_with_a_token_signs_that_token_out_not_the_owner(client, pg_db):
    alice = signup(client, "Alice")
    phone = client.post("/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    owners_phone = Caller(client, phone.json()["token"], alice.user_id, alice.email)
    guesses = [
        call(alice, "POST", f"{ME}/2fa", {"password": f"guess-{n}-password"}) for n in range(5)
    ]
    assert [r.status_code for r in guesses] == [401] * 5
    assert [r.json()["error"]["code"] for r in guesses] == ["invalid_credentials"] * 4 + [
        "session_revoked"
    ]
    assert guesses[0].json()["error"]["details"]["attempts_left"] == 4
    refused(alice.get(ME), 401, "invalid_token")  # the thief's token is dead
    assert owners_phone.get(ME).status_code == 200  # the owner's session goes on
    login = client.post("/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert login.status_code == 200  # and signing in was never locked
    assert alice.get(ME).status_code == 401
    assert owners_phone.get(ME).json()["two_factor"] is False


def enable_2fa(caller: Caller) -> str:
    """2FA on, as its owner turns it on: the password at both steps."""
    started = call(caller, "POST", f"{ME}/2fa", {"password": PASSWORD})
    assert started.status_code == 200, started.text
    secret: str = started.json()["secret"]
    first = {"otp": pyotp.TOTP(secret).now(), "password": PASSWORD}
    confirmed = call(caller, "POST", f"{ME}/2fa/confirm", first)
    assert confirmed.status_code == 200, confirmed.text
    return secret


def test_with_the_password_and_code_every_change_works(client, pg_db):
    alice = signup(client, "Alice")
    # an enrolment begun by the owner cannot be finished with the token alone
    started = call(alice, "POST", f"{ME}/2fa", {"password": PASSWORD})
    secret = started.json()["secret"]
    refused(
        call(alice, "POST", f"{ME}/2fa/confirm", {"otp": pyotp.TOTP(secret).now()}),
        403,
        "reauthentication_required",
    )
    first = {"otp": pyotp.TOTP(secret).now(), "password": PASSWORD}
    codes = call(alice, "POST", f"{ME}/2fa/confirm", first).json()["recovery_codes"]
    step = {"password": PASSWORD}
    # with 2FA on, the password alone is not enough either
    refused(
        call(alice, "PUT", f"{ME}/anti-phishing-code", {"code": "Ab12", **step}),
        401,
        "otp_required",
    )
    put = call(alice, "PUT", f"{ME}/anti-phishing-code", {"code": "Ab12", **step, "otp": codes[0]})
    assert put.status_code == 204, put.text
    shown = call(alice, "POST", f"{ME}/anti-phishing-code/preview", {**step, "otp": codes[1]})
    assert shown.status_code == 200 and shown.json()["text"] == "Anti-phishing code: Ab12"
    assert shown.headers["cache-control"] == "no-store"
    fresh = call(alice, "POST", f"{ME}/2fa/recovery-codes", {**step, "otp": codes[2]})
    assert fresh.status_code == 200 and len(fresh.json()["recovery_codes"]) == 10
    new_codes = fresh.json()["recovery_codes"]
    refused(  # the old codes stopped working
        call(alice, "DELETE", f"{ME}/anti-phishing-code", {**step, "otp": codes[3]}),
        401,
        "invalid_otp",
    )
    removed = call(alice, "DELETE", f"{ME}/anti-phishing-code", {**step, "otp": new_codes[0]})
    assert removed.status_code == 204
    moved = call(
        alice,
        "PUT",
        f"{ME}/email",
        {"email": "alice.moved@example.com", **step, "otp": new_codes[1]},
    )
    assert moved.status_code == 204
    assert alice.get(ME).json()["email_verified"] is False  # the new address: verified again
    changed = call(
        alice,
        "POST",
        f"{ME}/password",
        {"current_password": PASSWORD, "new_password": "a-new-passphrase-42", "otp": new_codes[2]},
    )
    assert changed.status_code == 204
    off = call(
        alice, "POST", f"{ME}/2fa/disable", {"password": "a-new-passphrase-42", "otp": new_codes[3]}
    )
    assert off.status_code == 204 and alice.get(ME).json()["two_factor"] is False


# --------------------------------------------------------------------------- R-SEC-11 over HTTP


def test_an_unverified_email_moves_no_money(client, pg_db):
    alice = signup(client, "Alice", verify=False)
    bob = signup(client, "Bob")
    assert alice.get(ME).json()["email_verified"] is False
    before = state(pg_db, alice.user_id)
    topup = alice.post("/v1/topups", {"asset": "HKD", "amount": "100.00", "channel": "sandbox"})
    refused(topup, 403, "email_unverified")
    send = alice.post("/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "1.00"})
    refused(send, 403, "email_unverified")
    assert state(pg_db, alice.user_id) == before  # no wallet, no key, no transfer
    factory = db.make_session_factory(pg_db)
    token = emailed_token(factory, alice.email, "account.verify_email")
    refused(
        client.post("/v1/auth/verify-email", json={"token": token[:-2]}),
        400,
        ("invalid_verification_token"),
    )
    assert client.post("/v1/auth/verify-email", json={"token": token}).status_code == 204
    assert alice.get(ME).json()["email_verified"] is True
    alice.topup("100.00")
    assert alice.balance()["total"] == "100.00"


def test_resend_a_verification_link(client, pg_db):
    alice = signup(client, "Alice", verify=False)
    path = f"{ME}/verify-email/resend"
    # the link of the sign-up and two more: three an hour
    assert [alice.post(path, {}, key=None).status_code for _ in range(2)] == [202, 202]
    refused(alice.post(path, {}, key=None), 429, "rate_limited")
    token = emailed_token(db.make_session_factory(pg_db), alice.email, "account.verify_email")
    assert client.post("/v1/auth/verify-email", json={"token": token}).status_code == 204
    refused(alice.post(path, {}, key=None), 409, "email_already_verified")


def test_sign_up_of_a_taken_email_answers_as_a_new_one(client, pg_db):
    alice = signup(client, "Alice")
    answers = [
        client.post(
            "/v1/auth/register",
            json={"email": email, "password": "another-password-2", "name": "Mallory"},
        )
        for email in (alice.email, "brand.new@example.com")
    ]
    assert [a.status_code for a in answers] == [201, 201]
    assert [set(a.json()) for a in answers] == [{"user_id"}, {"user_id"}]
    taken_id = answers[0].json()["user_id"]
    assert taken_id != alice.user_id and len(taken_id) == len(alice.user_id)
    with db.make_session_factory(pg_db)() as session:
        assert session.get(User, taken_id) is None
    # Mallory cannot sign in to Alice's account with the password she chose
    mallory = {"email": alice.email, "password": "another-password-2"}
    refused(client.post("/v1/auth/login", json=mallory), 401, "invalid_credentials")
