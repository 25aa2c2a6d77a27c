"""Cookie names and flags (issue #10, finding 6): over https every cookie of ours is ``Secure``
and named ``__Host-`` (``Path=/``, no ``Domain``) or, on a narrower path, ``__Secure-``; so a
sibling subdomain cannot plant or shadow them, and a cookie without the prefix is not ours.
Over plain http on loopback (the demo, development, the tests) the names and ``Secure`` stay off,
since a browser refuses a prefixed cookie without ``Secure``, and the demo keeps working."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity import service as identity
from strongroom.settings import Settings
from tests.api.conftest import PASSWORD, make_settings, production_settings

from .conftest import csrf_token, web_user


def _set_cookies(response: object) -> dict[str, str]:
    """``Set-Cookie`` lines by cookie name."""
    lines = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return {line.split("=", 1)[0]: line for line in lines}


@pytest.fixture
def production(pg_db: Engine) -> Settings:
    return production_settings(pg_db)


@pytest.fixture
def https(pg_db: Engine, production: Settings) -> Iterator[TestClient]:
    app = create_app(production, pg_db)
    with TestClient(app, base_url="https://strongroom.example", follow_redirects=False) as client:
        yield client


def two_factor_user(engine: Engine, settings: Settings) -> tuple[str, str]:
    """A user with 2FA on, its seed sealed with ``settings``' vault: (email, TOTP secret)."""
    email = f"prefixed.{uuid.uuid4().hex[:6]}@example.com"
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        user = identity.register(
            session=session,
            email=email,
            password=PASSWORD,
            name="Prefixed",
            region="HK",
            settings=settings.auth,
        )
        secret = identity.enrol_totp_now(session=session, user=user, settings=settings.auth).secret
    return email, secret


def _flags(line: str) -> set[str]:
    return {part.strip().lower() for part in line.split(";")[1:]}


def test_production_cookies_are_host_prefixed_and_sign_in_works(
    https: TestClient, pg_db: Engine, production: Settings
) -> None:
    email, secret = two_factor_user(pg_db, production)
    page = https.get("/app/signin")
    csrf = _set_cookies(page)["__Host-sr_csrf"]
    assert {"httponly", "path=/", "samesite=lax", "secure"} <= _flags(csrf)
    assert not any(flag.startswith("domain") for flag in _flags(csrf))
    first = https.post(
        "/app/signin",
        data={"csrf_token": csrf_token(page.text), "email": email, "password": PASSWORD},
    )
    assert first.status_code == 303, first.text
    pending = _set_cookies(first)["__Secure-sr_pending"]  # path /app/signin: not __Host-
    assert {"secure", "httponly", "path=/app/signin", "samesite=strict"} <= _flags(pending)
    code_page = https.get("/app/signin/code")
    assert code_page.status_code == 200
    otp = pyotp.TOTP(secret).now()
    second = https.post(
        "/app/signin/code", data={"csrf_token": csrf_token(code_page.text), "otp": otp}
    )
    assert second.status_code == 303, second.text
    session = _set_cookies(second)["__Host-sr_session"]
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= _flags(session)
    assert not any(flag.startswith("domain") for flag in _flags(session))
    assert not any(name.startswith("sr_") for name in _set_cookies(second))
    assert https.get("/app/").status_code == 200  # signed in by the prefixed cookie


def test_a_planted_unprefixed_session_cookie_is_not_ours_in_production(
    https: TestClient, pg_db: Engine
) -> None:
    """Cookie tossing: a sibling subdomain (or a plain-http answer) sets ``sr_session`` for
    the parent domain with a session token; the app reads only ``__Host-sr_session``."""
    user = web_user(pg_db, "Victim")
    login = https.post("/v1/auth/login", json={"email": user.email, "password": user.password})
    token = login.json()["token"]
    https.cookies.set("sr_session", token, domain="strongroom.example")
    answer = https.get("/app/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/app/signin")
    https.cookies.clear()
    https.cookies.set("__Host-sr_session", token, domain="strongroom.example")
    assert https.get("/app/").status_code == 200


def test_plain_http_on_loopback_keeps_plain_names_without_secure(pg_db: Engine) -> None:
    """The demo and the tests: ``http://127.0.0.1``, no prefix, no ``Secure``, as before."""
    app = create_app(make_settings(pg_db), pg_db)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        csrf = _set_cookies(client.get("/app/signin"))["sr_csrf"]
    assert "secure" not in _flags(csrf) and {"httponly", "path=/"} <= _flags(csrf)


def test_production_over_plain_http_still_sets_secure_prefixed_cookies(pg_db: Engine) -> None:
    app = create_app(production_settings(pg_db), pg_db)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        cookies = _set_cookies(client.get("/app/signin"))
    assert list(cookies) == ["__Host-sr_csrf"] and "secure" in _flags(cookies["__Host-sr_csrf"])
