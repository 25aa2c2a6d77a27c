"""Issue #9 in the Lite app, over HTTP against a live server on PostgreSQL: a screen that shows a
refusal settles it (``db.settle_refusal``), so what the identity service kept is committed and
nothing else. A wrong password at sign-in counts and is audited; a wrong 2FA code in a security
form counts towards the block; signing up with an email locked by earlier wrong guesses opens
the account and says the email is locked."""

from __future__ import annotations

import re

import httpx
import pyotp
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity.models import AuditEvent, LoginThrottle, TotpFactor, User

from .conftest import csrf_token, web_user


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return found.group(1)


def _sign_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    token = csrf_token(client.get("/app/signin").text)
    return client.post(
        "/app/signin", data={"csrf_token": token, "email": email, "password": password}
    )


def _count(engine: Engine, action: str) -> int:
    with db.make_session_factory(engine)() as session:
        query = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        return int(session.scalar(query) or 0)


def test_a_wrong_password_at_sign_in_counts_and_is_audited(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = web_user(pg_db)
    response = _sign_in(http, user.email, "not-the-password")
    assert response.status_code == 401
    assert _alert(response.text) == "The email or password is wrong."
    with db.make_session_factory(pg_db)() as session:
        throttle = session.get_one(LoginThrottle, user.email)
        assert throttle.failures == 1
    assert _count(pg_db, "login.failed") == 1


def test_a_wrong_code_in_a_security_form_counts_towards_the_block(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = web_user(pg_db, two_factor=True)
    assert user.totp_secret is not None
    assert _sign_in(http, user.email, user.password).status_code == 303
    token = csrf_token(http.get("/app/signin/code").text)
    otp = pyotp.TOTP(user.totp_secret).now()
    signed = http.post("/app/signin/code", data={"csrf_token": token, "otp": otp})
    assert signed.status_code == 303 and signed.headers["location"] == "/app/"
    token = csrf_token(http.get("/app/security/2fa").text)
    form = {"csrf_token": token, "otp": "000000", "password": user.password}
    wrong = http.post("/app/security/2fa/disable", data=form)
    assert wrong.status_code == 401 and "That code is not right" in _alert(wrong.text)
    with db.make_session_factory(pg_db)() as session:
        assert session.scalars(select(TotpFactor.failures)).one() == 1
        assert session.scalars(select(User.two_factor_enabled_at)).one() is not None
    assert _count(pg_db, "two_factor.failed") == 1


def test_sign_up_with_a_locked_email_opens_the_account_and_keeps_the_lock(
    http: httpx.Client, pg_db: Engine
) -> None:
    """Sign-up answers the same for every email (issue #10: it signs no one in), so it does
    not mention the lock either; the account is opened and signing in stays locked."""
    email = "early.bird@example.com"
    answers = [_sign_in(http, email, "a-guessed-password").status_code for _ in range(5)]
    assert answers == [401] * 4 + [429]
    token = csrf_token(http.get("/app/signup").text)
    form = {"email": email, "password": "a-long-password-1", "name": "Early Bird", "region": "HK"}
    response = http.post("/app/signup", data={"csrf_token": token, **form})
    assert response.status_code == 200 and "Check your email" in response.text
    assert "sr_session" not in http.cookies
    locked = _sign_in(http, email, form["password"])
    assert locked.status_code == 429 and _alert(locked.text).startswith("Too many wrong attempts")
    with db.make_session_factory(pg_db)() as session:
        assert session.scalars(select(User.email)).all() == [email]
    assert _count(pg_db, "account.registered") == 1
    assert _count(pg_db, "login.locked") == 1
