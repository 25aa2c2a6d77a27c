"""Issue #3 over HTTP on real PostgreSQL: anti-phishing code, 2FA, password reset, lockout,
sessions, security events, the operators' audit search and outbox, 2FA for operators."""

from __future__ import annotations

import re
import time

import httpx
import pyotp
import pytest
from sqlalchemy import select, update

from strongroom import db
from strongroom.identity import passwords
from strongroom.identity.models import User
from strongroom.notify.models import OutboxEmail
from tests.api.conftest import PASSWORD, Caller, operator, signup


def error_of(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return body["error"]


def put_code(caller: Caller, code: str, password: str = PASSWORD) -> httpx.Response:
    """Set the code with the step-up's password (R-SEC-8)."""
    return caller.client.put(
        "/v1/me/anti-phishing-code",
        json={"code": code, "password": password},
        headers=caller.headers(),
    )


def newest_email(engine, user_id: str, template_id: str) -> OutboxEmail:
    with db.make_session_factory(engine)() as session:
        row = session.scalars(
            select(OutboxEmail)
            .where(OutboxEmail.user_id == user_id, OutboxEmail.template_id == template_id)
            .order_by(OutboxEmail.id.desc())
        ).first()
    assert row is not None
    return row


# --------------------------------------------------------------------------- R-APC


def test_anti_phishing_code_set_preview_remove(client, pg_db):
    alice = signup(client, "Alice")
    assert put_code(alice, "Ab12Z9").status_code == 204
    me = alice.get("/v1/me").json()
    assert me["anti_phishing_code_set"] is True and me["withdrawals_frozen_until"]
    preview_path = "/v1/me/anti-phishing-code/preview"
    preview = alice.post(preview_path, {"password": PASSWORD}, key=None).json()
    assert preview["code_set"] is True and preview["text"] == "Anti-phishing code: Ab12Z9"
    assert "Ab12Z9" in preview["html"]
    other = alice.post(preview_path, {"code": "Q1"}, key=None).json()
    assert other["text"] == "Anti-phishing code: Q1"
    error_of(alice.post(preview_path, {"code": "<b>"}, key=None), 422, "invalid_anti_phishing_code")
    email = newest_email(pg_db, alice.user_id, "security.settings_changed")
    assert email.body_text.startswith("Anti-phishing code: Ab12Z9")
    removed = client.request(
        "DELETE", "/v1/me/anti-phishing-code", json={"password": PASSWORD}, headers=alice.headers()
    )
    assert removed.status_code == 204
    assert alice.get("/v1/me").json()["anti_phishing_code_set"] is False


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "format"),
        ("1234567", "format"),
        ("ab-c", "format"),
        ("密码", "format"),
        ("123456", "common_password"),
        ("own-password", "equals_password"),
    ],
)
def test_bad_anti_phishing_codes_are_refused(client, pg_db, code, reason):
    alice = signup(client, "Alice")
    if code == "own-password":  # only an account from before the 10-character rule can have one
        code = "Zq9Xw2"
        with db.unit_of_work(db.make_session_factory(pg_db)) as session:
            session.execute(
                update(User)
                .where(User.id == alice.user_id)
                .values(password_hash=passwords.hash_password(code))
            )
    password = code if reason == "equals_password" else PASSWORD
    error = error_of(put_code(alice, code, password), 422, "invalid_anti_phishing_code")
    assert error["details"]["reason"] == reason
    assert alice.get("/v1/me").json()["anti_phishing_code_set"] is False


# --------------------------------------------------------------------------- R-SEC-3


def next_code(secret: str, steps_ahead: int = 1) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def test_two_factor_enrol_login_and_disable(client, pg_db):
    alice = signup(client, "Alice")
    enrol = alice.post("/v1/me/2fa", {"password": PASSWORD}, key=None)
    assert enrol.status_code == 200 and enrol.headers["cache-control"] == "no-store"
    secret = enrol.json()["secret"]
    assert enrol.json()["otpauth_uri"].startswith("otpauth://totp/Strongroom:")
    qr = client.get("/v1/me/2fa/qr.svg", headers=alice.headers())
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert "<svg" in qr.text
    first = {"otp": "000000", "password": PASSWORD}
    error_of(alice.post("/v1/me/2fa/confirm", first, key=None), 401, "invalid_otp")
    first["otp"] = pyotp.TOTP(secret).now()
    confirmed = alice.post("/v1/me/2fa/confirm", first, key=None)
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    assert alice.get("/v1/me").json()["two_factor"] is True
    error_of(
        client.get("/v1/me/2fa/qr.svg", headers=alice.headers()), 404, "no_enrolment_in_progress"
    )
    login = {"email": alice.email, "password": PASSWORD}
    error_of(client.post("/v1/auth/login", json=login), 401, "otp_required")
    signed = client.post("/v1/auth/login", json=login | {"otp": next_code(secret)})
    assert signed.status_code == 200, signed.text
    with_recovery = client.post("/v1/auth/login", json=login | {"otp": codes[0]})
    assert with_recovery.status_code == 200
    disabled = alice.post("/v1/me/2fa/disable", {"otp": codes[1], "password": PASSWORD}, key=None)
    assert disabled.status_code == 204, disabled.text
    assert client.post("/v1/auth/login", json=login).status_code == 200


def test_operator_without_2fa_can_only_enrol(client, pg_db):
    op = operator(client, pg_db, "admin", two_factor=False)
    for path in ("/v1/admin/audit", "/v1/admin/outbox", "/v1/admin/ledger/accounts/1"):
        error_of(op.get(path), 403, "two_factor_required")
    secret = op.post("/v1/me/2fa", {"password": PASSWORD}, key=None).json()["secret"]
    first = {"otp": pyotp.TOTP(secret).now(), "password": PASSWORD}
    assert op.post("/v1/me/2fa/confirm", first, key=None).status_code == 200
    assert op.get("/v1/admin/audit").status_code == 200  # the same session goes on


# --------------------------------------------------------------------------- R-SEC-2, R-SEC-4


def test_lockout_answers_do_not_tell_whether_the_email_exists(client):
    alice = signup(client, "Alice")
    answers = {}
    for email in (alice.email, "nobody@example.com"):
        replies = [
            client.post("/v1/auth/login", json={"email": email, "password": "wrong-password-1"})
            for _ in range(5)
        ]
        assert [r.status_code for r in replies] == [401] * 4 + [429]
        answers[email] = replies[-1].json()["error"]
    known, unknown = answers.values()
    assert known["code"] == unknown["code"] == "account_locked"
    assert set(known["details"]) == set(unknown["details"]) == {"locked_until"}
    right = client.post("/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    error_of(right, 429, "account_locked")


def test_password_reset_over_http(client, pg_db):
    alice = signup(client, "Alice")
    for email in (alice.email, "nobody@example.com"):
        asked = client.post("/v1/auth/password-reset", json={"email": email})
        assert asked.status_code == 202 and asked.content == b""
    body = newest_email(pg_db, alice.user_id, "security.password_reset").body_text
    match = re.search(r"reset token: (\S+)", body)
    assert match is not None
    new = {"token": match.group(1), "new_password": "fresh-passphrase-31"}
    error_of(
        client.post("/v1/auth/password-reset/confirm", json=new | {"new_password": "qwertyuiop"}),
        422,
        "weak_password",
    )
    assert client.post("/v1/auth/password-reset/confirm", json=new).status_code == 204
    error_of(client.post("/v1/auth/password-reset/confirm", json=new), 400, "invalid_reset_token")
    error_of(alice.get("/v1/me"), 401, "invalid_token")  # every session was signed out
    login = client.post(
        "/v1/auth/login", json={"email": alice.email, "password": "fresh-passphrase-31"}
    )
    assert login.status_code == 200


def test_register_refuses_a_common_password(client):
    response = client.post(
        "/v1/auth/register", json={"email": "x@example.com", "password": "password123", "name": "X"}
    )
    assert error_of(response, 422, "weak_password")["details"]["reason"] == "common_password"


# --------------------------------------------------------------------------- R-SEC-6, R-SEC-7


def test_sessions_list_revoke_and_logout(client, pg_db):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    second = client.post(
        "/v1/auth/login",
        json={"email": alice.email, "password": PASSWORD},
        headers={"User-Agent": "PhoneApp/2.0"},
    ).json()["token"]
    items = alice.get("/v1/me/sessions").json()["items"]
    assert len(items) == 2 and sum(item["current"] for item in items) == 1
    other = next(item for item in items if not item["current"])
    assert other["user_agent"] == "PhoneApp/2.0" and other["ip"] == "testclient"
    bobs = bob.get("/v1/me/sessions").json()["items"][0]["id"]
    error_of(
        client.delete(f"/v1/me/sessions/{bobs}", headers=alice.headers()), 404, "session_not_found"
    )
    assert bob.get("/v1/me").status_code == 200
    gone = client.delete(f"/v1/me/sessions/{other['id']}", headers=alice.headers())
    assert gone.status_code == 204
    error_of(
        client.get("/v1/me", headers={"Authorization": f"Bearer {second}"}), 401, "invalid_token"
    )
    third = signup_again(client, alice)
    assert alice.post("/v1/me/sessions/revoke-others", {}, key=None).json() == {"revoked": 1}
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {third}"}).status_code == 401
    assert client.post("/v1/auth/logout", headers=alice.headers()).status_code == 204
    error_of(alice.get("/v1/me"), 401, "invalid_token")


def signup_again(client, caller: Caller) -> str:
    response = client.post("/v1/auth/login", json={"email": caller.email, "password": PASSWORD})
    assert response.status_code == 200
    return str(response.json()["token"])


def test_own_security_events_page_by_cursor(client):
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    client.post("/v1/auth/login", json={"email": alice.email, "password": "wrong-password-1"})
    put_code(alice, "Ab12")
    first = alice.get("/v1/me/security-events", limit=2).json()
    assert [e["action"] for e in first["items"]] == ["anti_phishing_code.set", "login.failed"]
    assert first["items"][1]["ip"] == "testclient"
    rest = alice.get("/v1/me/security-events", cursor=first["next_cursor"]).json()
    assert [e["action"] for e in rest["items"]] == [
        "login.succeeded",
        "email.verified",
        "email.verification_sent",
        "account.registered",
    ]
    assert rest["next_cursor"] is None
    bobs = bob.get("/v1/me/security-events").json()["items"]
    assert {e["action"] for e in bobs} == {
        "login.succeeded",
        "email.verified",
        "email.verification_sent",
        "account.registered",
    }
    error_of(alice.get("/v1/me/security-events", cursor="nope"), 422, "invalid_cursor")


def test_operators_audit_search_and_outbox(client, pg_db):
    admin, support = operator(client, pg_db, "admin"), operator(client, pg_db, "support")
    alice = signup(client, "Alice")
    assert support.get("/v1/admin/outbox", user_id=alice.user_id).status_code == 200
    found = admin.get("/v1/admin/audit", actor=support.email, action="operator").json()
    (event,) = found["items"]
    assert event["details"]["route"] == "/v1/admin/outbox"
    assert event["actor_role"] == "support" and event["ip"] == "testclient"
    assert event["user_agent"] == "testclient"
    logins = admin.get("/v1/admin/audit", action="login.succeeded").json()["items"]
    assert {e["subject_user_id"] for e in logins} >= {alice.user_id, admin.user_id}
    since = admin.get("/v1/admin/audit", since="2999-01-01T00:00:00").json()
    assert since == {"items": [], "next_cursor": None}
    error_of(support.get("/v1/admin/audit"), 403, "forbidden")
    mails = support.get("/v1/admin/outbox", user_id=alice.user_id).json()["items"]
    assert {m["template_id"] for m in mails} == {
        "account.verify_email",
        "account.welcome",
        "security.login_alert",
    }
    assert all("body" not in key for m in mails for key in m)
    assert mails[0]["status"] == "pending" and mails[0]["to"] == alice.email
    error_of(
        support.post(f"/v1/admin/outbox/{mails[0]['id']}/retry", {}, key=None), 403, "forbidden"
    )
    error_of(
        admin.post(f"/v1/admin/outbox/{mails[0]['id']}/retry", {}, key=None),
        409,
        "email_not_failed",
    )
    error_of(admin.get("/v1/admin/outbox", status="bogus"), 422, "invalid_status")
