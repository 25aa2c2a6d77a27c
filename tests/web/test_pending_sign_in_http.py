"""Finding 5 of issue #10: the two-step sign-in's cookie held the email and the password for 5
minutes, sealed under a key derived from the secret key (the default one decrypts it), and
could be replayed within them.

Now the password step keeps a single-use pending sign-in on the server (3 minutes, its nonce
stored hashed) and ``sr_pending`` carries only that nonce, signed with the part's path and the
browser's CSRF seed. The attacks: replaying the cookie after the sign-in completed, after it
expired, or from another browser, or at the other part's code step; each goes back to the
password form, gives no session and counts nothing (no row, no 2FA failure, no rate-limit
hit), and the honest browser's sign-in still works."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pyotp
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from strongroom.db import utcnow
from strongroom.identity.models import PendingSignIn, TotpFactor
from strongroom.ratelimit.models import RateLimitBucket
from tests.web.conftest import WebUser, csrf_token, fingerprint, new_client, web_user
from tests.web.console_support import make_operator, password_step

STEP_S = 30


def _state(engine: Engine) -> dict[str, Any]:
    """Every table's rows, and the counters a refused step could bump."""
    state: dict[str, Any] = dict(fingerprint(engine))
    with engine.connect() as connection:
        for label, column in (
            ("rate limit hits", RateLimitBucket.hits),
            ("2FA failures", TotpFactor.failures),
        ):
            state[label] = connection.execute(select(func.coalesce(func.sum(column), 0))).scalar()
        state["used pending sign-ins"] = connection.execute(
            select(func.count())
            .select_from(PendingSignIn)
            .where(PendingSignIn.consumed_at.is_not(None))
        ).scalar()
    return state


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def _password(client: httpx.Client, user: WebUser, part: str = "/app") -> httpx.Response:
    token = csrf_token(client.get(f"{part}/signin").text)
    response = client.post(
        f"{part}/signin", data={"csrf_token": token, "email": user.email, "password": user.password}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{part}/signin/code"
    return response


def _code(user: WebUser, step: int = 0) -> str:
    """A valid code ``step`` time steps from now (the server accepts one step of drift)."""
    assert user.totp_secret is not None
    return pyotp.TOTP(user.totp_secret).at(time.time() + step * STEP_S)


def _code_step(client: httpx.Client, token: str, otp: str, part: str = "/app") -> httpx.Response:
    return client.post(f"{part}/signin/code", data={"csrf_token": token, "otp": otp})


def _started_over(response: httpx.Response, part: str = "/app") -> None:
    assert response.status_code == 303 and response.headers["location"] == f"{part}/signin"
    assert "sr_session" not in _set_cookies(response)


def test_the_cookie_carries_only_a_signed_nonce(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db, two_factor=True)
    line = _set_cookies(_password(http, user))["sr_pending"]
    assert "Path=/app/signin" in line and "SameSite=strict" in line and "HttpOnly" in line
    max_age = int(line.split("Max-Age=")[1].split(";")[0])
    assert 170 <= max_age <= 180  # 3 minutes, not 5
    value = http.cookies["sr_pending"]
    nonce, mac = value.split(".")
    assert len(nonce) == 43 and len(mac) == 43
    assert user.email not in value and user.password not in value
    with pg_db.connect() as connection:
        stored = connection.execute(select(PendingSignIn.nonce_hash)).scalars().all()
    assert len(stored) == 1 and nonce not in stored[0]


def test_replaying_the_cookie_after_the_sign_in_fails(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db, two_factor=True)
    _password(http, user)
    token = csrf_token(http.get("/app/signin/code").text)
    copied = dict(http.cookies)  # the whole cookie jar, as someone who copied it before
    done = _code_step(http, token, _code(user))
    assert done.status_code == 303 and done.headers["location"] == "/app/"
    assert "sr_pending=" in done.headers["set-cookie"]  # dropped
    before = _state(pg_db)
    with new_client(str(http.base_url)) as replay:
        replay.cookies.update(copied)
        _started_over(replay.get("/app/signin/code"))
        _started_over(_code_step(replay, token, _code(user, step=1)))
        assert "sr_session" not in replay.cookies
    assert _state(pg_db) == before


def test_an_expired_pending_sign_in_fails_and_a_new_one_works(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = web_user(pg_db, two_factor=True)
    _password(http, user)
    token = csrf_token(http.get("/app/signin/code").text)
    with pg_db.begin() as connection:  # three minutes pass
        connection.execute(update(PendingSignIn).values(expires_at=utcnow() - timedelta(seconds=1)))
    copied = dict(http.cookies)
    before = _state(pg_db)
    with new_client(str(http.base_url)) as late:  # the same browser's cookies, a copy
        late.cookies.update(copied)
        _started_over(late.get("/app/signin/code"))
    _started_over(_code_step(http, token, _code(user)))
    assert _state(pg_db) == before
    _password(http, user)
    token = csrf_token(http.get("/app/signin/code").text)
    assert _code_step(http, token, _code(user)).headers["location"] == "/app/"


def test_the_cookie_from_another_browser_fails_and_the_owner_still_signs_in(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = web_user(pg_db, two_factor=True)
    _password(http, user)
    stolen = http.cookies["sr_pending"]
    before = _state(pg_db)
    with new_client(live_url) as thief:
        token = csrf_token(thief.get("/app/signin").text)  # the thief's own CSRF seed
        thief.cookies.set("sr_pending", stolen)
        _started_over(thief.get("/app/signin/code"))
        _started_over(_code_step(thief, token, _code(user)))
        tampered = stolen[:-4] + ("AAAA" if not stolen.endswith("AAAA") else "BBBB")
        thief.cookies.set("sr_pending", tampered)
        _started_over(_code_step(thief, token, _code(user)))
    assert _state(pg_db) == before
    owner_token = csrf_token(http.get("/app/signin/code").text)
    assert _code_step(http, owner_token, _code(user)).headers["location"] == "/app/"


def test_the_console_and_the_app_do_not_take_each_others_cookie(
    http: httpx.Client, pg_db: Engine
) -> None:
    operator = make_operator(pg_db, "support")
    _password(http, operator)  # the Lite app's sign-in of an operator
    app_cookie = http.cookies["sr_pending"]
    token = csrf_token(http.get("/console/signin").text)
    before = _state(pg_db)
    http.cookies.set("sr_pending", app_cookie, path="/console/signin")
    _started_over(http.get("/console/signin/code"), "/console")
    _started_over(_code_step(http, token, _code(operator), "/console"), "/console")
    assert _state(pg_db) == before
    # the console's own sign-in, then its cookie replayed after it completed
    with new_client(str(http.base_url)) as console:
        first = password_step(console, operator.email, operator.password)
        assert first.headers["location"] == "/console/signin/code"
        code_token = csrf_token(console.get("/console/signin/code").text)
        copied = dict(console.cookies)
        done = _code_step(console, code_token, _code(operator), "/console")
        assert done.headers["location"] == "/console/"
    before = _state(pg_db)
    with new_client(str(http.base_url)) as replay:
        replay.cookies.update(copied)
        _started_over(_code_step(replay, code_token, _code(operator, 1), "/console"), "/console")
    assert _state(pg_db) == before
