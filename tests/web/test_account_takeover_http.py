"""Issue #10 part C in the Lite app, over HTTP: a stolen session cookie changes no security
setting and reads no anti-phishing code (R-SEC-8, finding 3); the send review masks the
recipient's name, sign-up and the reset request answer the same whether or not the email has an
account, the reset and verification links open real pages that take their token from the
fragment (finding 6); an unverified email moves no money (R-SEC-11)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx
import pyotp
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.db import Base
from strongroom.identity.models import User
from tests.api.conftest import emailed_token

from .conftest import (
    WebUser,
    csrf_token,
    fingerprint,
    new_client,
    session_active,
    web_sign_in,
    web_user,
)

KEY_FIELD = re.compile(r'name="idempotency_key" value="([^"]+)"')


def alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return unescape(found.group(1))


def signed_in(http: httpx.Client, engine: Engine, name: str = "Alice", **kwargs: Any) -> WebUser:
    user = web_user(engine, name, **kwargs)
    web_sign_in(http, user)
    return user


def user_row(engine: Engine, email: str) -> tuple[Any, ...]:
    with db.make_session_factory(engine)() as session:
        row = session.scalars(select(User).filter_by(email=email)).one()
        return (
            row.password_hash,
            row.anti_phishing_code,
            row.two_factor_enabled_at,
            row.withdrawals_frozen_until,
        )


def post(http: httpx.Client, page: str, action: str, **form: str) -> httpx.Response:
    return http.post(action, data={"csrf_token": csrf_token(http.get(page).text), **form})


# --------------------------------------------------------------------------- R-SEC-8


def test_a_stolen_session_cookie_changes_no_security_setting(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = signed_in(http, pg_db)
    saved = post(
        http,
        "/app/security/anti-phishing",
        "/app/security/anti-phishing",
        code="Ab12",
        password=user.password,
    )
    assert saved.status_code == 303
    before, row = fingerprint(pg_db), user_row(pg_db, user.email)
    thefts = [
        ("/app/security/2fa", "/app/security/2fa/start", {}),
        ("/app/security/anti-phishing", "/app/security/anti-phishing", {"code": "Th1ef"}),
        ("/app/security/anti-phishing", "/app/security/anti-phishing/remove", {}),
        (
            "/app/security/password",
            "/app/security/password",
            {
                "current_password": "",
                "new_password": "the-thiefs-password-1",
                "repeat_password": "the-thiefs-password-1",
            },
        ),
    ]
    for page, action, form in thefts:
        response = post(http, page, action, **form)
        assert response.status_code == 403, action
        assert "Enter your password to make this change." in alert(response.text), action
    assert fingerprint(pg_db) == before and user_row(pg_db, user.email) == row


def test_the_anti_phishing_code_is_never_shown_nor_put_in_a_url(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = signed_in(http, pg_db)
    post(
        http,
        "/app/security/anti-phishing",
        "/app/security/anti-phishing",
        code="Sec4et",
        password=user.password,
    )
    page = http.get("/app/security/anti-phishing").text
    assert "Sec4et" not in page and "You have a code" in page
    assert 'hx-params="code"' in page  # the preview posts the code alone, never the password
    token = csrf_token(page)
    empty = http.post("/app/security/anti-phishing/preview", data={"csrf_token": token})
    assert "Sec4et" not in empty.text and "mail-frame" not in empty.text
    typed = http.post(
        "/app/security/anti-phishing/preview", data={"csrf_token": token, "code": "Zz9"}
    )
    frame = re.search(r'<iframe class="mail-frame" src="([^"]+)"', typed.text)
    assert frame is not None
    address = unescape(frame.group(1))
    assert "Zz9" not in address and re.fullmatch(
        r"/app/security/anti-phishing/email\?p=\S+", address
    )
    assert "Zz9" in http.get(address).text  # this session's frame shows the typed code
    with new_client(live_url) as other:  # another session of the same user: sealed for ours
        web_sign_in(other, user)
        assert other.get(address).status_code == 404
    assert http.get("/app/security/anti-phishing/email?code=Sec4et").status_code == 404


def test_wrong_passwords_in_a_security_form_sign_that_browser_out(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = signed_in(http, pg_db)
    stolen = http.cookies["sr_session"]
    answers = [
        post(http, "/app/security/2fa", "/app/security/2fa/start", password=f"guess-{n}-password")
        for n in range(5)
    ]
    assert [a.status_code for a in answers[:4]] == [401] * 4
    assert alert(answers[0].text) == "Your password is wrong."
    assert answers[4].status_code == 303 and answers[4].headers["location"] == "/app/signin"
    assert not session_active(pg_db, stolen)
    with new_client(live_url) as owner:  # the owner signs in: sign-in was never locked
        web_sign_in(owner, user)


def test_two_factor_asks_for_the_password_at_each_step(http: httpx.Client, pg_db: Engine) -> None:
    user = signed_in(http, pg_db)
    page = http.get("/app/security/2fa").text
    assert 'name="password"' in page
    post(http, "/app/security/2fa", "/app/security/2fa/start", password=user.password)
    page = http.get("/app/security/2fa").text
    secret = re.search(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>', page)
    assert secret is not None
    key = secret.group(1).replace(" ", "")
    no_password = post(
        http, "/app/security/2fa", "/app/security/2fa/confirm", otp=pyotp.TOTP(key).now()
    )
    assert no_password.status_code == 403
    on = post(
        http,
        "/app/security/2fa",
        "/app/security/2fa/confirm",
        otp=pyotp.TOTP(key).now(),
        password=user.password,
    )
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", on.text)
    assert len(codes) == 10
    fresh = post(
        http,
        "/app/security/2fa",
        "/app/security/2fa/recovery-codes",
        otp=codes[0],
        password=user.password,
    )
    assert fresh.status_code == 200 and fresh.headers["cache-control"] == "no-store"
    assert "The old ones no longer work" in fresh.text
    new_codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", fresh.text)
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)


# --------------------------------------------------------------------------- leaks


def test_the_send_review_masks_the_recipients_name(http: httpx.Client, pg_db: Engine) -> None:
    from .conftest import sandbox_topup

    user = signed_in(http, pg_db)
    sandbox_topup(pg_db, user.email, "50.00")
    recipient = web_user(pg_db, "Chan")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        found = session.scalars(select(User).filter_by(email=recipient.email)).one()
        found.name = "Chan Tai Man"
    page = http.get("/app/send").text
    review = http.post(
        "/app/send",
        data={
            "csrf_token": csrf_token(page),
            "to": recipient.email,
            "asset": "HKD",
            "amount": "1.00",
        },
    )
    assert review.status_code == 200
    assert '<strong class="recipient">C** T** M**</strong>' in review.text
    assert "Tai" not in review.text and "Chan Tai Man" not in review.text


def _sign_up(http: httpx.Client, email: str, name: str) -> httpx.Response:
    token = csrf_token(http.get("/app/signup").text)
    form = {"email": email, "password": "a-long-password-1", "name": name, "region": "HK"}
    return http.post("/app/signup", data={"csrf_token": token, **form})


def test_sign_up_answers_the_same_for_a_taken_email(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    owner = web_user(pg_db, "Owner")
    taken = _sign_up(http, owner.email, "Mallory")
    with new_client(live_url) as other:
        fresh = _sign_up(other, "someone.new@example.com", "Mallory")
        assert "sr_session" not in other.cookies
    assert taken.status_code == fresh.status_code == 200
    assert "sr_session" not in http.cookies

    def main(html: str, email: str) -> str:
        body = re.search(r"<main.*</main>", html, re.S)
        assert body is not None
        return re.sub(r'name="csrf_token" value="[^"]+"', "", body.group(0)).replace(email, "E")

    assert main(taken.text, owner.email) == main(fresh.text, "someone.new@example.com")
    with db.make_session_factory(pg_db)() as session:
        emails = set(session.scalars(select(User.email)))
    assert emails == {owner.email, "someone.new@example.com"}


def test_the_reset_request_answers_the_same_and_the_link_opens_a_real_page(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = web_user(pg_db)
    signin = http.get("/app/signin").text
    assert 'href="/app/forgot-password"' in signin
    answers = [
        post(http, "/app/forgot-password", "/app/forgot-password", email=email)
        for email in (user.email, "nobody@example.com")
    ]
    assert [a.status_code for a in answers] == [200, 200]
    texts = [re.sub(r'value="[^"]+"', "", a.text) for a in answers]
    assert texts[0] == texts[1]
    token = emailed_token(db.make_session_factory(pg_db), user.email, "security.password_reset")
    page = http.get("/app/reset-password")
    assert page.status_code == 200 and "data-fragment-token" in page.text
    mismatch = post(
        http,
        "/app/reset-password",
        "/app/reset-password",
        token=token,
        new_password="a-fresh-passphrase-8",
        repeat_password="another-passphrase-8",
    )
    assert mismatch.status_code == 422
    done = post(
        http,
        "/app/reset-password",
        "/app/reset-password",
        token=token,
        new_password="a-fresh-passphrase-8",
        repeat_password="a-fresh-passphrase-8",
    )
    assert done.status_code == 200 and "Your password was changed." in done.text
    again = post(
        http,
        "/app/reset-password",
        "/app/reset-password",
        token=token,
        new_password="a-fresh-passphrase-9",
        repeat_password="a-fresh-passphrase-9",
    )
    assert again.status_code == 400 and "This reset link does not work" in alert(again.text)
    with new_client(live_url) as browser:
        web_sign_in(browser, WebUser(user.email, "a-fresh-passphrase-8", user.name))


# --------------------------------------------------------------------------- R-SEC-11


def _state(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }


def test_an_unverified_email_moves_no_money_until_the_link_is_opened(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = signed_in(http, pg_db, verified=False)
    home = http.get("/app/").text
    assert 'id="unverified"' in home and user.email in home
    page = http.get("/app/topup").text
    key = KEY_FIELD.search(page)
    assert key is not None
    before = _state(pg_db)
    form = {
        "csrf_token": csrf_token(page),
        "idempotency_key": key.group(1),
        "asset": "HKD",
        "amount": "100.00",
        "channel": "sandbox",
    }
    refused = http.post("/app/topup", data=form)
    assert refused.status_code == 403 and "Confirm your email address first" in alert(refused.text)
    assert _state(pg_db) == before
    resent = post(http, "/app/", "/app/verify-email/resend")
    assert resent.status_code == 200 and "We sent a new link" in resent.text
    token = emailed_token(db.make_session_factory(pg_db), user.email, "account.verify_email")
    verify_page = http.get("/app/verify-email").text
    assert "data-fragment-token" in verify_page and "data-autosubmit" in verify_page
    wrong = post(http, "/app/verify-email", "/app/verify-email", token="not-the-token")
    assert wrong.status_code == 400 and "This link does not work" in alert(wrong.text)
    verified = post(http, "/app/verify-email", "/app/verify-email", token=token)
    assert verified.status_code == 200 and "Your email address is confirmed." in verified.text
    assert 'id="unverified"' not in http.get("/app/").text
    page = http.get("/app/topup").text
    key = KEY_FIELD.search(page)
    assert key is not None
    form.update(csrf_token=csrf_token(page), idempotency_key=key.group(1))
    assert http.post("/app/topup", data=form).status_code == 303
