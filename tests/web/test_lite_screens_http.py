"""The Lite app's money and security screens over HTTP (issue #5, phase 2a), against the live
server on PostgreSQL: top-up and transfer once per form whatever the number of submits, clear
refusals with nothing written, history pages and receipts, password, 2FA, sessions, security
events, the anti-phishing preview, and CSRF on every POST route the app has under /app."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from html import unescape

import fastapi.routing
import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import service as identity
from strongroom.identity.models import AuthToken, User
from strongroom.ledger.models import Account, Transfer
from strongroom.notify import render as mail

from .conftest import (
    WebUser,
    csrf_token,
    fingerprint,
    new_client,
    sandbox_topup,
    session_active,
    web_sign_in,
    web_user,
)

KEY_FIELD = re.compile(r'name="idempotency_key" value="([^"]+)"')


def _signed_in(http: httpx.Client, engine: Engine, name: str = "Alice", **kwargs: str) -> WebUser:
    user = web_user(engine, name, **kwargs)  # type: ignore[arg-type]
    web_sign_in(http, user)
    return user


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return unescape(found.group(1))


def _form_fields(html: str) -> dict[str, str]:
    """The CSRF token and idempotency key of a page's form."""
    key = KEY_FIELD.search(html)
    assert key is not None, "no idempotency key on the page"
    return {"csrf_token": csrf_token(html), "idempotency_key": key.group(1)}


def _transfers(engine: Engine, code: str) -> int:
    with db.make_session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Transfer).filter_by(code=code)) or 0


def _balance(engine: Engine, email: str, asset: str = "HKD") -> int:
    with db.make_session_factory(engine)() as session:
        user = identity.find_user(session=session, reference=email)
        assert user is not None
        account = session.scalars(
            select(Account).filter_by(owner_type="user", owner_id=user.id, asset=asset)
        ).first()
        return 0 if account is None else account.credits_posted - account.debits_posted


# --------------------------------------------------------------------------- top-up


def test_a_top_up_form_sent_twice_tops_up_once(http: httpx.Client, pg_db: Engine) -> None:
    user = _signed_in(http, pg_db)
    page = http.get("/app/topup")
    assert page.status_code == 200 and 'name="amount"' in page.text
    fields = _form_fields(page.text)
    assert fields["idempotency_key"] != _form_fields(http.get("/app/topup").text)["idempotency_key"]
    form = {**fields, "asset": "HKD", "amount": "250.50"}
    first = http.post("/app/topup", data=form)
    again = http.post("/app/topup", data=form)  # a double click, or a refresh of the POST
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"].startswith("/app/receipts/")
    assert _transfers(pg_db, "topup") == 1
    assert _balance(pg_db, user.email) == 250_50
    receipt = http.get(first.headers["location"])
    assert receipt.status_code == 200
    assert "+250.50" in receipt.text and "Top-up" in receipt.text
    # the same key with other values is not a second top-up either
    changed = http.post("/app/topup", data={**form, "amount": "999.00"})
    assert changed.status_code == 409
    assert "already sent with other values" in _alert(changed.text)
    assert _transfers(pg_db, "topup") == 1
    # a new render is a new top-up
    fresh = {**_form_fields(http.get("/app/topup").text), "asset": "USDT", "amount": "0.000001"}
    assert http.post("/app/topup", data=fresh).status_code == 303
    assert _balance(pg_db, user.email, "USDT") == 1


def test_two_submits_at_the_same_time_top_up_once(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    """A double tap sends the form twice at once: the ledger's batcher claims the key once."""
    user = _signed_in(http, pg_db)
    form = {**_form_fields(http.get("/app/topup").text), "asset": "HKD", "amount": "7.00"}
    cookies = dict(http.cookies)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=live_url, cookies=cookies, timeout=30) as tap:
            return tap.post("/app/topup", data=form, follow_redirects=False)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(send, range(2)))
    assert [answer.status_code for answer in answers] == [303, 303]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    assert _transfers(pg_db, "topup") == 1 and _balance(pg_db, user.email) == 7_00


@pytest.mark.parametrize(
    ("asset", "amount", "message"),
    [
        ("HKD", "1.234", "HKD amounts have at most 2 decimal places."),
        ("BTC", "0.000000001", "BTC amounts have at most 8 decimal places."),
        ("PTS", "1.5", "PTS amounts are whole numbers."),
        ("HKD", "0", "Enter an amount greater than zero."),
        ("HKD", "0.00", "Enter an amount greater than zero."),
        ("HKD", "-5", "Enter an amount greater than zero."),
        ("HKD", "1,000", "Enter the amount with digits and a decimal point only"),
        ("HKD", "1e3", "Enter the amount with digits and a decimal point only"),
        ("HKD", "", "Enter the amount with digits and a decimal point only"),
        ("HKD", "9" * 60, "That amount is too large."),
        ("XYZ", "10", "Choose an asset from the list."),
        ("hkd", "10", "Choose an asset from the list."),
    ],
)
def test_a_bad_top_up_is_refused_in_the_form(
    http: httpx.Client, pg_db: Engine, asset: str, amount: str, message: str
) -> None:
    _signed_in(http, pg_db)
    fields = _form_fields(http.get("/app/topup").text)
    before = fingerprint(pg_db)
    response = http.post("/app/topup", data={**fields, "asset": asset, "amount": amount})
    assert response.status_code == 422
    assert _alert(response.text).startswith(message)
    assert f'value="{amount}"' in response.text  # what was typed is kept
    assert _form_fields(response.text)["idempotency_key"] != fields["idempotency_key"]
    assert fingerprint(pg_db) == before


def test_a_top_up_in_chinese_shows_chinese_refusals(http: httpx.Client, pg_db: Engine) -> None:
    _signed_in(http, pg_db)
    http.cookies.set("lang", "zh_Hant")
    fields = _form_fields(http.get("/app/topup").text)
    response = http.post("/app/topup", data={**fields, "asset": "HKD", "amount": "1.234"})
    assert response.status_code == 422
    assert _alert(response.text) == "HKD 金額最多只可有 2 位小數。"


def test_a_top_up_form_with_a_bad_key_is_refused(http: httpx.Client, pg_db: Engine) -> None:
    _signed_in(http, pg_db)
    fields = _form_fields(http.get("/app/topup").text)
    before = fingerprint(pg_db)
    for key in ("", "has spaces", "semi;colon"):
        response = http.post(
            "/app/topup",
            data={**fields, "idempotency_key": key, "asset": "HKD", "amount": "5"},
        )
        assert response.status_code == 422, key
        assert "This form has expired" in _alert(response.text)
    assert fingerprint(pg_db) == before


# --------------------------------------------------------------------------- transfers


def _review(http: httpx.Client, **form: str) -> httpx.Response:
    token = csrf_token(http.get("/app/send").text)
    return http.post("/app/send", data={"csrf_token": token, **form})


def test_send_asks_to_confirm_then_sends_once(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    alice = _signed_in(http, pg_db, "Alice")
    bob = web_user(pg_db, "Bob")
    sandbox_topup(pg_db, alice.email, "100.00")
    before = fingerprint(pg_db)
    review = _review(http, to=bob.email.upper(), asset="HKD", amount="12.50", note="Lunch")
    assert review.status_code == 200
    assert "Confirm the transfer" in review.text
    assert '<strong class="recipient">B**</strong>' in review.text  # masked (issue #10)
    assert '<span class="figure">12.50</span>' in review.text and "Lunch" in review.text
    assert fingerprint(pg_db) == before  # checking wrote nothing, not even a wallet for Bob
    fields = _form_fields(review.text)
    form = {**fields, "to": bob.email.upper(), "asset": "HKD", "amount": "12.50", "note": "Lunch"}
    first = http.post("/app/send/confirm", data=form)
    again = http.post("/app/send/confirm", data=form)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert _transfers(pg_db, "p2p") == 1
    assert _balance(pg_db, alice.email) == 87_50 and _balance(pg_db, bob.email) == 12_50
    receipt = http.get(first.headers["location"]).text
    assert "Sent to Bob" in receipt and "\u221212.50" in receipt and "Lunch" in receipt
    with new_client(live_url) as bobs:
        web_sign_in(bobs, bob)
        history = bobs.get("/app/history").text
        assert "Received from Alice" in history and "+12.50" in history and "Lunch" in history
        assert bobs.get(first.headers["location"]).status_code == 200
        carol = web_user(pg_db, "Carol")
    with new_client(live_url) as carols:  # a stranger to the transfer: as if it did not exist
        web_sign_in(carols, carol)
        assert carols.get(first.headers["location"]).status_code == 404
        assert carols.get("/app/receipts/no-such-transfer").status_code == 404


def test_change_goes_back_to_the_form_with_the_values(http: httpx.Client, pg_db: Engine) -> None:
    alice = _signed_in(http, pg_db)
    bob = web_user(pg_db, "Bob")
    sandbox_topup(pg_db, alice.email, "10.00")
    review = _review(http, to=bob.email, asset="HKD", amount="3", note="Taxi")
    fields = {"csrf_token": csrf_token(review.text)}
    back = http.post(
        "/app/send/edit",
        data={**fields, "to": bob.email, "asset": "HKD", "amount": "3", "note": "Taxi"},
    )
    assert back.status_code == 200 and 'id="send-form"' in back.text
    assert f'value="{bob.email}"' in back.text and 'value="Taxi"' in back.text
    assert _transfers(pg_db, "p2p") == 0


@pytest.mark.parametrize("step", ["review", "confirm"])
def test_send_refusals_are_clear_and_move_nothing(
    http: httpx.Client, pg_db: Engine, step: str
) -> None:
    alice = _signed_in(http, pg_db, "Alice")
    bob = web_user(pg_db, "Bob")
    chen = web_user(pg_db, "Chen", region="CN")
    sandbox_topup(pg_db, alice.email, "20.00")
    cases = [
        ({"to": bob.email, "amount": "20.01"}, "Not enough money: you have 20.00 HKD available."),
        (
            {"to": "nobody@example.com", "amount": "1"},
            "There is no Strongroom user with that email, phone number or user id.",
        ),
        (
            {"to": "not an email", "amount": "1"},
            "There is no Strongroom user with that email, phone number or user id.",
        ),
        ({"to": chen.email, "amount": "1"}, "This person's wallet is in another region"),
        ({"to": alice.email, "amount": "1"}, "You cannot send money to yourself."),
        ({"to": bob.email, "amount": "1.001"}, "HKD amounts have at most 2 decimal places."),
        ({"to": bob.email, "amount": "0"}, "Enter an amount greater than zero."),
        ({"to": bob.email, "amount": "1", "note": "n" * 141}, "The note is too long: at most 140"),
    ]
    for values, message in cases:
        form = {"asset": "HKD", "note": "", **values}
        if step == "review":
            response = _review(http, **form)
        else:
            page = http.get("/app/send").text
            data = {"csrf_token": csrf_token(page), "idempotency_key": "k-" + message[:20], **form}
            data["idempotency_key"] = re.sub(r"[^A-Za-z0-9_.:-]", "-", data["idempotency_key"])
            response = http.post("/app/send/confirm", data=data)
        assert response.status_code in (400, 404, 422), (values, response.status_code)
        assert _alert(response.text).startswith(message), values
        assert 'id="send-form"' in response.text  # back in the form, values kept
    assert _transfers(pg_db, "p2p") == 0
    assert _balance(pg_db, alice.email) == 20_00


def test_unknown_recipients_read_as_the_api_says(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    """The page says what the API's error says (no user with that email), not more."""
    alice = _signed_in(http, pg_db, "Alice")
    sandbox_topup(pg_db, alice.email, "5.00")
    api_token = httpx.post(
        f"{live_url}/v1/auth/login", json={"email": alice.email, "password": alice.password}
    ).json()["token"]
    api = httpx.post(
        f"{live_url}/v1/transfers",
        json={"to": "nobody@example.com", "asset": "HKD", "amount": "1"},
        headers={"Authorization": f"Bearer {api_token}", "Idempotency-Key": "k1"},
    )
    assert api.status_code == 404 and api.json()["error"]["code"] == "recipient_not_found"
    page = _review(http, to="nobody@example.com", asset="HKD", amount="1", note="")
    assert page.status_code == 404
    assert "nobody@example.com" not in _alert(page.text)


# --------------------------------------------------------------------------- history


def test_history_pages_and_load_more(http: httpx.Client, pg_db: Engine) -> None:
    user = _signed_in(http, pg_db)
    for cents in range(1, 26):  # 25 rows: a page of 20, then 5
        sandbox_topup(pg_db, user.email, f"{cents}.00")
    first = http.get("/app/history")
    rows = re.findall(r'<li class="row in" data-transfer="([^"]+)"', first.text)
    assert len(rows) == 20
    assert "+25.00" in first.text and "Balance 325.00" in first.text  # newest first
    more = re.search(r'<a class="button" href="([^"]+)" hx-get="([^"]+)"', first.text)
    assert more is not None
    page_link, rows_link = unescape(more.group(1)), unescape(more.group(2))
    fragment = http.get(rows_link, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    next_rows = re.findall(r'<li class="row in" data-transfer="([^"]+)"', fragment.text)
    assert len(next_rows) == 5 and not set(next_rows) & set(rows)
    assert "+1.00" in fragment.text and "Load more" not in fragment.text
    plain = http.get(page_link)  # without JavaScript: the same rows as a page
    assert plain.status_code == 200 and "Back to the latest" in plain.text
    assert re.findall(r'<li class="row in" data-transfer="([^"]+)"', plain.text) == next_rows
    assert http.get("/app/history?cursor=not-a-cursor").status_code == 422


def test_history_is_empty_for_a_new_user(http: httpx.Client, pg_db: Engine) -> None:
    _signed_in(http, pg_db)
    page = http.get("/app/history")
    assert page.status_code == 200 and "Nothing here yet" in page.text


# --------------------------------------------------------------------------- password


def _post_form(http: httpx.Client, page: str, action: str, **form: str) -> httpx.Response:
    token = csrf_token(http.get(page).text)
    return http.post(action, data={"csrf_token": token, **form})


def test_change_password_refusals_and_success(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = _signed_in(http, pg_db)
    with new_client(live_url) as phone:
        web_sign_in(phone, user)
        phone_token = phone.cookies["sr_session"]
    page, action = "/app/security/password", "/app/security/password"
    good = "a-new-long-password-7"
    cases = [
        ({"current_password": "wrong-password-1"}, "Your current password is wrong."),
        ({"new_password": "short", "repeat_password": "short"}, "The new password is too short"),
        (
            {"new_password": "qwertyuiop", "repeat_password": "qwertyuiop"},
            "The new password is one",
        ),
        ({"repeat_password": good + "x"}, "The two new passwords are not the same."),
    ]
    for values, message in cases:
        form = {
            "current_password": user.password,
            "new_password": good,
            "repeat_password": good,
            **values,
        }
        response = _post_form(http, page, action, **form)
        assert response.status_code in (401, 422), values
        assert _alert(response.text).startswith(message), values
    with db.make_session_factory(pg_db)() as session:
        row = identity.find_user(session=session, reference=user.email)
        assert row is not None and row.withdrawals_frozen_until is None
    done = _post_form(
        http,
        page,
        action,
        current_password=user.password,
        new_password=good,
        repeat_password=good,
    )
    assert done.status_code == 303 and done.headers["location"] == "/app/security"
    overview = http.get(done.headers["location"]).text
    assert "Your password was changed" in overview
    assert "withdrawals are paused until" in overview
    assert not session_active(pg_db, phone_token) and session_active(
        pg_db, http.cookies["sr_session"]
    )
    with new_client(live_url) as again:
        web_sign_in(again, WebUser(user.email, good, user.name))


def test_the_done_sentence_is_shown_once_and_only_after_a_change(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = _signed_in(http, pg_db)
    assert 'class="success"' not in http.get("/app/security?done=password").text
    saved = _post_form(
        http,
        "/app/security/anti-phishing",
        "/app/security/anti-phishing",
        code="Zz9",
        password=user.password,
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/app/security"
    assert "Path=/app/security" in saved.headers["set-cookie"]
    first = http.get("/app/security").text
    assert '<p class="success" role="status">' in first and "anti-phishing code was saved" in first
    assert 'class="success"' not in http.get("/app/security").text  # once


# --------------------------------------------------------------------------- 2FA


def test_two_factor_enrolment_codes_once_and_disable(http: httpx.Client, pg_db: Engine) -> None:
    user = _signed_in(http, pg_db)
    page = http.get("/app/security/2fa")
    assert "Set up two-step verification" in page.text
    start = _post_form(http, "/app/security/2fa", "/app/security/2fa/start", password=user.password)
    assert start.status_code == 303 and start.headers["location"] == "/app/security/2fa"
    page = http.get("/app/security/2fa").text
    secret = re.search(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>', page)
    assert secret is not None
    key = secret.group(1).replace(" ", "")
    assert len(key) == 32
    assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+" width="232"', page)
    wrong = _post_form(
        http, "/app/security/2fa", "/app/security/2fa/confirm", otp="000000", password=user.password
    )
    assert wrong.status_code == 401 and "That code is not right" in _alert(wrong.text)
    assert key in wrong.text.replace(" ", "")  # still enrolling, same key
    right = _post_form(
        http,
        "/app/security/2fa",
        "/app/security/2fa/confirm",
        otp=pyotp.TOTP(key).now(),
        password=user.password,
    )
    assert right.status_code == 200 and right.headers["cache-control"] == "no-store"
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", right.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert "withdrawals are paused until" in right.text
    # sent again (a refresh): 2FA is on, the codes are not shown again
    again = http.post(
        "/app/security/2fa/confirm",
        data={
            "csrf_token": csrf_token(right.text),
            "otp": pyotp.TOTP(key).now(),
            "password": user.password,
        },
    )
    assert again.status_code == 409 and not any(code in again.text for code in codes)
    status = http.get("/app/security/2fa").text
    assert "You have 10 unused recovery codes." in status and key not in status.replace(" ", "")
    disable = "/app/security/2fa/disable"
    refused = _post_form(http, "/app/security/2fa", disable, otp="123456", password=user.password)
    assert refused.status_code == 401
    off = _post_form(http, "/app/security/2fa", disable, otp=codes[0], password=user.password)
    assert off.status_code == 303
    assert off.headers["location"] == "/app/security"
    assert "Two-step verification is off." in http.get("/app/security").text
    with db.make_session_factory(pg_db)() as session:
        row = identity.find_user(session=session, reference=user.email)
        assert row is not None and row.two_factor_enabled_at is None


# --------------------------------------------------------------------------- sessions, events


def test_sessions_list_revoke_one_and_all_others(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = _signed_in(http, pg_db)
    tokens = []
    for _ in range(2):
        with new_client(live_url) as other:
            web_sign_in(other, user)
            tokens.append(other.cookies["sr_session"])
    page = http.get("/app/security/sessions").text
    assert len(re.findall(r'<li class="card session', page)) == 3
    assert page.count("This device") == 1 and page.count("Sign out this session") == 2
    with db.make_session_factory(pg_db)() as session:
        ids = {
            row.id: row
            for row in session.scalars(select(AuthToken).where(AuthToken.revoked_at.is_(None)))
        }
    current = re.search(r'<li class="card session current" data-session="([^"]+)"', page)
    assert current is not None and current.group(1) in ids
    others = re.findall(r'action="/app/security/sessions/([^/"]+)/revoke"', page)
    assert len(others) == 2 and current.group(1) not in others
    one = http.post(
        f"/app/security/sessions/{others[0]}/revoke", data={"csrf_token": csrf_token(page)}
    )
    assert one.status_code == 303
    assert sum(session_active(pg_db, token) for token in tokens) == 1
    assert "That session was signed out" in http.get(one.headers["location"]).text
    rest = _post_form(http, "/app/security/sessions", "/app/security/sessions/revoke-others")
    assert rest.status_code == 303
    assert not any(session_active(pg_db, token) for token in tokens)
    assert session_active(pg_db, http.cookies["sr_session"])
    # another user's session id reads as one that does not exist
    stranger = web_user(pg_db, "Mallory")
    with new_client(live_url) as mallory:
        web_sign_in(mallory, stranger)
        theirs = mallory.cookies["sr_session"]
    with db.make_session_factory(pg_db)() as session:
        _, auth = identity.authenticate_session(session=session, token=theirs)
        their_id = auth.id
    refused = _post_form(
        http, "/app/security/sessions", f"/app/security/sessions/{their_id}/revoke"
    )
    assert refused.status_code == 404 and session_active(pg_db, theirs)


def test_security_events_are_paged(http: httpx.Client, live_url: str, pg_db: Engine) -> None:
    user = _signed_in(http, pg_db)
    # sign-ins elsewhere: registration, verification link and its use, 23 sign-ins = 26 events
    for _ in range(22):
        with new_client(live_url) as other:
            web_sign_in(other, user)
    first = http.get("/app/security/events")
    assert first.status_code == 200
    assert first.text.count('<li class="card event">') == 20
    assert "Signed in" in first.text
    older = re.search(r'<a class="button" href="([^"]+)" rel="next">', first.text)
    assert older is not None
    second = http.get(unescape(older.group(1)))
    assert second.text.count('<li class="card event">') == 6
    assert "Account created" in second.text and 'rel="next"' not in second.text
    chinese = http.get("/app/security/events", headers={"Accept-Language": "zh-HK"})
    assert "已登入" in chinese.text


# --------------------------------------------------------------------------- anti-phishing


def test_anti_phishing_preview_is_the_real_emails_banner(http: httpx.Client, pg_db: Engine) -> None:
    user = _signed_in(http, pg_db)
    page = http.get("/app/security/anti-phishing")
    token = csrf_token(page.text)
    assert 'hx-post="/app/security/anti-phishing/preview"' in page.text
    assert 'hx-trigger="input changed delay:300ms"' in page.text
    before = fingerprint(pg_db)
    preview = http.post(
        "/app/security/anti-phishing/preview",
        data={"csrf_token": token, "code": "Ab12Z9"},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200 and "<html" not in preview.text
    assert mail.banner_text("Ab12Z9") in unescape(preview.text)
    frame = re.search(r'<iframe class="mail-frame" src="([^"]+)" sandbox', preview.text)
    assert frame is not None
    email = http.get(unescape(frame.group(1)))
    assert email.status_code == 200
    assert str(mail.banner_html("Ab12Z9")) in email.text  # the emails' own banner, unchanged
    policy = email.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src" not in policy and "frame-ancestors 'self'" in policy
    assert email.headers["x-frame-options"] == "SAMEORIGIN"
    for code, message in (
        ("Ab-12", "Use 1 to 6 letters (A-Z, a-z) or digits, nothing else."),
        ("abcdefg", "Use 1 to 6 letters (A-Z, a-z) or digits, nothing else."),
        ("123456", "This code is one of the most common passwords: choose another."),
    ):
        refused = http.post(
            "/app/security/anti-phishing/preview", data={"csrf_token": token, "code": code}
        )
        assert _alert(refused.text) == message, code
        assert "mail-frame" not in refused.text
        assert http.get(f"/app/security/anti-phishing/email?code={code}").status_code == 404
    assert fingerprint(pg_db) == before  # previews write nothing
    assert "Ab12Z9" not in unescape(email.headers.get("location", "") + frame.group(1))
    stepped = {"csrf_token": token, "password": user.password}
    saved = http.post("/app/security/anti-phishing", data={**stepped, "code": "Ab12Z9"})
    assert saved.status_code == 303 and saved.headers["location"] == "/app/security"
    assert "withdrawals are paused until" in http.get(saved.headers["location"]).text
    with db.make_session_factory(pg_db)() as session:
        row = session.scalars(select(User).filter_by(email=user.email)).one()
        assert row.anti_phishing_code == "Ab12Z9" and row.withdrawals_frozen_until is not None
    assert "Ab12Z9" not in http.get("/app/security/anti-phishing").text  # never shown again
    common = http.post("/app/security/anti-phishing", data={**stepped, "code": "qwerty"})
    assert common.status_code == 422 and "most common passwords" in _alert(common.text)
    empty = http.post("/app/security/anti-phishing", data={**stepped, "code": " "})
    assert empty.status_code == 422 and "Enter a code" in _alert(empty.text)
    removed = http.post("/app/security/anti-phishing/remove", data=stepped)
    assert removed.headers["location"] == "/app/security"
    assert "anti-phishing code was removed" in http.get("/app/security").text
    with db.make_session_factory(pg_db)() as session:
        assert (
            session.scalars(select(User).filter_by(email=user.email)).one().anti_phishing_code
            is None
        )


# --------------------------------------------------------------------------- CSRF, every route


def _app_post_routes(app: FastAPI) -> list[str]:
    """Every POST route the running app has under /app, whatever router added it. FastAPI
    0.16x keeps included routers nested (``fastapi.routing.iter_route_contexts`` walks them);
    older versions list the routes flat in ``app.routes``."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(walk(app.routes)) if walk is not None else list(app.routes)
    found = set()
    for route in routes:
        path = getattr(route, "path", None) or ""
        if "POST" in (getattr(route, "methods", None) or ()) and (
            path == "/app" or path.startswith("/app/")
        ):
            found.add(path)
    assert found, "no POST route under /app: the walk over the app's routes is broken"
    return sorted(found)


def test_every_post_route_under_app_refuses_a_missing_or_wrong_csrf_token(
    http: httpx.Client, live_url: str, app: FastAPI, pg_db: Engine
) -> None:
    user = _signed_in(http, pg_db)
    sandbox_topup(pg_db, user.email, "50.00")
    bob = web_user(pg_db, "Bob")
    session_token = http.cookies["sr_session"]
    right = csrf_token(http.get("/app/").text)
    with new_client(live_url) as stranger:
        foreign = csrf_token(stranger.get("/app/signin").text)
    with new_client(live_url) as phone:
        web_sign_in(phone, user)
        phone_token = phone.cookies["sr_session"]
    with db.make_session_factory(pg_db)() as session:
        _, phone_session = identity.authenticate_session(session=session, token=phone_token)
        phone_id = phone_session.id
    routes = _app_post_routes(app)
    mine = {
        "/app/topup",
        "/app/send",
        "/app/send/confirm",
        "/app/security/password",
        "/app/security/2fa/start",
        "/app/security/2fa/confirm",
        "/app/security/2fa/disable",
        "/app/security/anti-phishing",
        "/app/security/anti-phishing/preview",
        "/app/security/anti-phishing/remove",
        "/app/security/sessions/{session_id}/revoke",
        "/app/security/sessions/revoke-others",
        "/app/bank-accounts",
        "/app/bank-accounts/{account_id}/remove",
        "/app/addresses",
        "/app/addresses/{address_id}/remove",
        "/app/addresses/whitelist-mode",
        "/app/phone",
        "/app/phone/remove",
    }
    assert mine <= set(routes)
    form = {  # fields every form would accept, so only the token can be what is refused
        "asset": "HKD",
        "amount": "10.00",
        "to": bob.email,
        "note": "csrf",
        "idempotency_key": "csrf-test-key",
        "current_password": user.password,
        "new_password": "a-new-long-password-7",
        "repeat_password": "a-new-long-password-7",
        "otp": "123456",
        "code": "Ab12",
        "email": "new.user@example.com",
        "password": "a-long-password-1",
        "name": "Mallory",
        "region": "HK",
        "lang": "zh_Hant",
        "next": "/app/",
        "holder_name": "Alice",
        "bank_code": "004",
        "account_number": "123456789",
        "phone": "+852 5123 4567",
        "address": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wl3",
        "whitelist_only": "true",
    }
    before = fingerprint(pg_db)
    for route in routes:
        path = (
            route.replace("{session_id}", phone_id)
            .replace("{account_id}", "1")
            .replace("{address_id}", "1")
        )
        assert "{" not in path, f"give {route} a value for its path parameter"
        for token in (None, "", "wrong", foreign, right + "x"):
            data = form if token is None else {**form, "csrf_token": token}
            response = http.post(path, data=data)
            assert response.status_code == 403, (route, token)
            assert "This form has expired" in response.text
        header = http.post(path, data=form, headers={"X-CSRF-Token": foreign, "HX-Request": "true"})
        assert header.status_code == 403, route
    assert fingerprint(pg_db) == before
    assert session_active(pg_db, session_token) and session_active(pg_db, phone_token)
    assert _balance(pg_db, user.email) == 50_00
