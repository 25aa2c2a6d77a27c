"""The Lite app over HTTP, without a browser: security headers and cookie flags, CSRF on every
form (nothing written when refused), web sessions as identity sessions (revoke, sign out,
everywhere), sign-in refusals, languages, the manifest, icons and service worker."""

from __future__ import annotations

import json
import re
import struct
import tomllib
from pathlib import Path

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.web import core, lite
from tests.api.conftest import make_settings, production_settings

from .conftest import (
    assert_locked_down,
    csrf_token,
    fingerprint,
    new_client,
    sandbox_topup,
    session_active,
    web_sign_in,
    web_user,
)
from .test_pages import _glob_match

PAGES = ("/app/signin", "/app/signup", "/app/offline")


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each cookie the response sets, by name: its whole Set-Cookie line."""
    found = {}
    for line in response.headers.get_list("set-cookie"):
        found[line.split("=", 1)[0]] = line
    return found


# --------------------------------------------------------------------------- headers, cookies


def test_pages_send_the_security_headers_and_no_inline_code(http: httpx.Client) -> None:
    for path in (*PAGES, "/app/no-such-page"):
        response = http.get(path)
        assert response.status_code == (404 if "no-such" in path else 200), path
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert_locked_down(http, response)
        assert "'unsafe-inline'" not in core.CONTENT_SECURITY_POLICY
        assert "'unsafe-eval'" not in core.CONTENT_SECURITY_POLICY
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", response.text)
    config = re.search(r"name=\"htmx-config\" content='([^']+)'", http.get("/app/signin").text)
    assert config is not None
    assert json.loads(config.group(1))["includeIndicatorStyles"] is False
    assert json.loads(config.group(1))["allowEval"] is False


def test_session_cookie_flags_and_no_store(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db)
    response = web_sign_in(http, user)
    assert response.headers["location"] == "/app/"
    line = _set_cookies(response)["sr_session"]
    assert "HttpOnly" in line and "SameSite=lax" in line and "Path=/" in line
    # plain http on 127.0.0.1 with env=test: Secure is relaxed (see web/cookies.py)
    assert "Secure" not in line
    home = http.get("/app/")
    assert home.status_code == 200 and user.name in home.text
    assert home.headers["cache-control"] == "no-store"
    with httpx.Client(base_url=str(http.base_url)) as fresh:
        seed = _set_cookies(fresh.get("/app/signin"))["sr_csrf"]
    assert "HttpOnly" in seed and "SameSite=lax" in seed and "Max-Age" not in seed


def _secure_app(sqlite_db: Engine, env: str) -> FastAPI:
    if env == "production":  # production starts only with production's settings
        return create_app(production_settings(sqlite_db), sqlite_db)
    settings = make_settings(sqlite_db)
    return create_app(settings.model_copy(update={"env": env}), sqlite_db)


@pytest.mark.parametrize(
    ("env", "base_url", "secure"),
    [
        ("production", "http://127.0.0.1", True),
        ("production", "https://wallet.example", True),
        ("development", "https://wallet.example", True),
        ("development", "http://wallet.example", True),
        ("demo", "http://localhost:8000", False),
        ("development", "http://127.0.0.1:8000", False),
        ("test", "http://127.0.0.1:8000", False),
    ],
)
def test_cookies_are_secure_except_plain_http_loopback_in_demo_or_development(
    sqlite_db: Engine, env: str, base_url: str, secure: bool
) -> None:
    user = web_user(sqlite_db)
    prefix = "__Host-" if secure else ""  # Secure with Path=/: the host-only prefix too
    with TestClient(_secure_app(sqlite_db, env), base_url=base_url) as client:
        page = client.get("/app/signin")
        token = csrf_token(page.text)
        client.cookies.set(f"{prefix}sr_csrf", page.cookies[f"{prefix}sr_csrf"])
        response = client.post(
            "/app/signin",
            data={"csrf_token": token, "email": user.email, "password": user.password},
            follow_redirects=False,
        )
    assert response.status_code == 303
    for name in (f"{prefix}sr_csrf",):
        assert ("Secure" in _set_cookies(page)[name]) is secure
    session_line = _set_cookies(response)[f"{prefix}sr_session"]
    assert ("Secure" in session_line) is secure
    assert "HttpOnly" in session_line and "SameSite=lax" in session_line


# --------------------------------------------------------------------------- CSRF


WEB_SCREENS = lite.SCREENS  # the console's screens join here


def _post_routes() -> list[str]:
    """Every path of a web screen that takes a POST (each form's target)."""
    return sorted(
        route.path
        for screen in WEB_SCREENS
        for route in screen.routes
        if isinstance(route, APIRoute) and "POST" in (route.methods or ())
    )


def test_every_form_refuses_a_missing_or_wrong_csrf_token(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = web_user(pg_db)
    web_sign_in(http, user)
    session_token = http.cookies["sr_session"]
    home = http.get("/app/")
    right = csrf_token(home.text)
    with new_client(live_url) as stranger:  # a real token, but of another browser
        foreign = csrf_token(stranger.get("/app/signin").text)
    routes = _post_routes()
    assert {"/app/signup", "/app/signin", "/app/signout", "/app/language"} <= set(routes)
    before = fingerprint(pg_db)
    form = {
        "email": "new.user@example.com",
        "password": "a-long-password-1",
        "name": "Mallory",
        "region": "HK",
        "otp": "123456",
        "lang": "zh_Hant",
        "next": "/app/",
    }
    for path in routes:
        for token in (None, "", "wrong", foreign, right + "x"):
            data = form if token is None else {**form, "csrf_token": token}
            response = http.post(path, data=data)
            assert response.status_code == 403, (path, token)
            assert "text/html" in response.headers["content-type"]
            assert "This form has expired" in response.text
            assert not any("lang=" in line for line in response.headers.get_list("set-cookie"))
        header = http.post(path, data=form, headers={"X-CSRF-Token": foreign})
        assert header.status_code == 403, path
    assert fingerprint(pg_db) == before
    assert session_active(pg_db, session_token)
    # the right token, in the form or in htmx's header, is accepted
    switched = http.post("/app/language", data={"csrf_token": right, "lang": "zh_Hant"})
    assert switched.status_code == 303 and "lang=zh_Hant" in switched.headers["set-cookie"]
    signed_out = http.post("/app/signout", headers={"X-CSRF-Token": right})
    assert signed_out.status_code == 303
    assert not session_active(pg_db, session_token)


OPEN_PAGES = {
    "/app",  # a redirect to /app/
    "/app/signin",
    "/app/signup",
    "/app/signin/code",  # without a pending sign-in: back to /app/signin
    "/app/offline",
    "/app/forgot-password",  # asking for a reset link
    "/app/reset-password",  # the emailed reset link (its token in the fragment)
    "/app/verify-email",  # the emailed verification link (its token in the fragment)
    "/app/gifts/claim",  # a gift's claim link: signed out, a sign-in link that comes back
    "/app/manifest.webmanifest",
    "/app/sw.js",
}


def _get_routes() -> list[str]:
    return sorted(
        route.path
        for screen in WEB_SCREENS
        for route in screen.routes
        if isinstance(route, APIRoute) and "GET" in (route.methods or ())
    )


def test_every_other_page_sends_a_stranger_to_sign_in(http: httpx.Client, pg_db: Engine) -> None:
    victim = web_user(pg_db, "Victim")
    sandbox_topup(pg_db, victim.email, "10.00")
    routes = _get_routes()
    assert set(routes) >= OPEN_PAGES | {"/app/", "/app/balances"}
    for path in routes:
        if path in OPEN_PAGES:
            continue
        for cookie in (None, "sr_not-a-real-token"):
            with httpx.Client(base_url=str(http.base_url)) as stranger:
                if cookie is not None:
                    stranger.cookies.set("sr_session", cookie)
                response = stranger.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/app/signin"), path
            assert victim.name not in response.text and "10.00" not in response.text


def test_a_token_from_before_sign_in_is_refused_after_it(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db)
    anonymous = csrf_token(http.get("/app/signin").text)
    web_sign_in(http, user)
    response = http.post("/app/signout", data={"csrf_token": anonymous})
    assert response.status_code == 403
    assert session_active(pg_db, http.cookies["sr_session"])


# --------------------------------------------------------------------------- sessions


def test_a_web_session_is_an_identity_session(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db)
    web_sign_in(http, user)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        row = identity.find_user(session=session, reference=user.email)
        assert row is not None
        listed = identity.active_sessions(
            session=session, user=row, settings=make_settings(pg_db).auth
        )
        assert len(listed) == 1
        identity.revoke_session(session=session, user=row, session_id=listed[0].id)
    response = http.get("/app/")  # revoked elsewhere: this browser is signed out
    assert response.status_code == 303
    assert response.headers["location"] == "/app/signin"
    assert 'sr_session=""' in response.headers["set-cookie"]
    balances = http.get("/app/balances", headers={"HX-Request": "true"})
    assert balances.status_code == 204 and balances.headers["hx-redirect"] == "/app/signin"


def test_sign_out_revokes_the_session_on_the_server(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db)
    web_sign_in(http, user)
    token = http.cookies["sr_session"]
    response = http.post("/app/signout", data={"csrf_token": csrf_token(http.get("/app/").text)})
    assert response.status_code == 303 and response.headers["location"] == "/app/signin"
    assert not session_active(pg_db, token)
    # a copy of the cookie kept elsewhere is worth nothing now
    with httpx.Client(base_url=str(http.base_url), cookies={"sr_session": token}) as copy:
        assert copy.get("/app/", follow_redirects=False).status_code == 303


def test_sign_out_everywhere_revokes_every_session(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = web_user(pg_db)
    with new_client(live_url) as phone:
        web_sign_in(phone, user)
        phone_token = phone.cookies["sr_session"]
    api = httpx.post(
        f"{live_url}/v1/auth/login", json={"email": user.email, "password": user.password}
    ).json()["token"]
    web_sign_in(http, user)
    token = http.cookies["sr_session"]
    everywhere = http.post(
        "/app/signout/everywhere", data={"csrf_token": csrf_token(http.get("/app/").text)}
    )
    assert everywhere.status_code == 303
    for revoked in (token, phone_token, api):
        assert not session_active(pg_db, revoked)


def test_home_shows_each_balance_formatted(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db)
    sandbox_topup(pg_db, user.email, "1234567.89")
    sandbox_topup(pg_db, user.email, "0.00000001", "BTC")
    web_sign_in(http, user)
    html = http.get("/app/").text
    assert re.search(r'data-asset="HKD">.*?<span class="figure">1,234,567.89</span>', html, re.S)
    assert re.search(r'data-asset="BTC">.*?<span class="figure">0.00000001</span>', html, re.S)
    assert "All available" in html
    fragment = http.get("/app/balances", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fragment.text.lstrip().startswith("<section")
    assert "1,234,567.89" in fragment.text and "<html" not in fragment.text


# --------------------------------------------------------------------------- sign-in refusals


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return found.group(1)


def _sign_in_attempt(client: httpx.Client, email: str, password: str) -> httpx.Response:
    token = csrf_token(client.get("/app/signin").text)
    return client.post(
        "/app/signin", data={"csrf_token": token, "email": email, "password": password}
    )


def test_lockout_reads_the_same_for_known_and_unknown_emails(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = web_user(pg_db)
    unknown = "nobody.here@example.com"
    answers = {}
    for email in (user.email, unknown):
        for attempt in range(5):
            response = _sign_in_attempt(http, email, "not-the-password")
            if attempt < 4:
                assert response.status_code == 401
                assert _alert(response.text) == "The email or password is wrong."
        assert response.status_code == 429
        answers[email] = re.sub(r"until .*\.$", "until <time>.", _alert(response.text))
        assert re.search(r"until .*20\d\d", _alert(response.text))  # a date, in HK time
        assert "sr_session" not in http.cookies
    assert answers[user.email] == answers[unknown]
    assert answers[unknown].startswith("Too many wrong attempts")
    # locked: even the right password is refused now
    right = _sign_in_attempt(http, user.email, user.password)
    assert right.status_code == 429 and "sr_session" not in http.cookies


def test_sign_up_refusals_write_nothing(http: httpx.Client, pg_db: Engine) -> None:
    web_user(pg_db)
    cases = {
        "weak_password": {"email": "x1@example.com", "password": "short", "name": "X"},
        "email": {"email": "not-an-email", "password": "a-long-password-1", "name": "X"},
        "name": {"email": "x2@example.com", "password": "a-long-password-1", "name": " "},
        "region": {
            "email": "x3@example.com",
            "password": "a-long-password-1",
            "name": "X",
            "region": "ZZ",
        },
    }  # a taken email is not refused: it answers as a new one (test_email_verification)
    before = fingerprint(pg_db)
    for label, form in cases.items():
        token = csrf_token(http.get("/app/signup").text)
        response = http.post("/app/signup", data={"csrf_token": token, **form})
        assert response.status_code in (409, 422), label
        assert _alert(response.text), label
        assert 'name="password"' in response.text and form["password"] not in re.findall(
            r'value="([^"]*)"', response.text
        )
    assert fingerprint(pg_db) == before
    with db.make_session_factory(pg_db)() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_two_factor_sign_in_needs_the_code(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db, two_factor=True)
    assert user.totp_secret is not None
    response = _sign_in_attempt(http, user.email, user.password)
    assert response.status_code == 303
    assert response.headers["location"] == "/app/signin/code"
    pending = _set_cookies(response)["sr_pending"]
    assert "Path=/app/signin" in pending and "SameSite=strict" in pending
    assert user.password not in pending and "HttpOnly" in pending
    assert "sr_session" not in http.cookies
    code_page = http.get("/app/signin/code")
    token = csrf_token(code_page.text)
    wrong = http.post("/app/signin/code", data={"csrf_token": token, "otp": "000000"})
    assert wrong.status_code == 401 and "That code is not right" in _alert(wrong.text)
    tampered = dict(http.cookies)
    tampered["sr_pending"] = tampered["sr_pending"][:-4] + "AAAA"
    with httpx.Client(base_url=str(http.base_url), cookies=tampered) as other:
        refused = other.post(
            "/app/signin/code",
            data={"csrf_token": token, "otp": pyotp.TOTP(user.totp_secret).now()},
        )
        assert refused.status_code == 303 and refused.headers["location"] == "/app/signin"
    right = http.post(
        "/app/signin/code",
        data={"csrf_token": token, "otp": pyotp.TOTP(user.totp_secret).now()},
    )
    assert right.status_code == 303 and right.headers["location"] == "/app/"
    assert http.get("/app/").status_code == 200


# --------------------------------------------------------------------------- languages


def test_language_from_accept_language_and_the_switch(http: httpx.Client) -> None:
    english = http.get("/app/signin")
    assert '<html lang="en">' in english.text and "Sign in" in english.text
    for header in ("zh-Hant", "zh-TW,zh;q=0.9,en;q=0.8", "zh-HK", "fr-FR, zh;q=0.5"):
        chinese = http.get("/app/signin", headers={"Accept-Language": header})
        assert '<html lang="zh-Hant">' in chinese.text, header
        assert "登入" in chinese.text and "Sign in" not in chinese.text
    preferred = http.get("/app/signin", headers={"Accept-Language": "en-GB, zh-HK;q=0.5"})
    assert '<html lang="en">' in preferred.text
    token = csrf_token(english.text)
    for target in ("//evil.example/", "https://evil.example/app/", "/v1/me", "/\\evil"):
        switched = http.post(
            "/app/language", data={"csrf_token": token, "lang": "zh_Hant", "next": target}
        )
        assert switched.headers["location"] == "/app/", target
    switched = http.post(
        "/app/language", data={"csrf_token": token, "lang": "zh_Hant", "next": "/app/signup"}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/app/signup"
    line = _set_cookies(switched)["lang"]
    assert "HttpOnly" in line and "SameSite=lax" in line and "Max-Age=31536000" in line
    page = http.get("/app/signup", headers={"Accept-Language": "en"})
    assert '<html lang="zh-Hant">' in page.text and "建立你的帳戶" in page.text
    ignored = http.post("/app/language", data={"csrf_token": token, "lang": "xx"})
    assert "lang=" not in ignored.headers.get("set-cookie", "")


def test_error_pages_are_html_in_the_layout_and_translated(http: httpx.Client) -> None:
    missing = http.get("/app/nothing-here", headers={"Accept-Language": "zh-Hant"})
    assert missing.status_code == 404 and "找不到頁面" in missing.text
    assert 'class="bar"' in missing.text
    api = http.get("/v1/nothing-here")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    wrong_method = http.put("/app/signin")
    assert wrong_method.status_code == 405 and "<html" in wrong_method.text


# --------------------------------------------------------------------------- PWA


def _png_size(content: bytes) -> tuple[int, int]:
    assert content[:8] == b"\x89PNG\r\n\x1a\n" and content[12:16] == b"IHDR"
    width, height = struct.unpack(">II", content[16:24])
    return width, height


def test_manifest_and_icons(http: httpx.Client) -> None:
    response = http.get("/app/manifest.webmanifest")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    for field in ("name", "short_name", "start_url", "scope", "display", "icons"):
        assert manifest[field], field
    assert manifest["start_url"] == "/app/" and manifest["scope"] == "/app/"
    assert manifest["start_url"].startswith(manifest["scope"])
    assert manifest["display"] == "standalone"
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    sizes = set()
    for icon in manifest["icons"]:
        image = http.get(icon["src"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        width, height = _png_size(image.content)
        assert f"{width}x{height}" == icon["sizes"]
        sizes.add((icon["sizes"], icon["purpose"]))
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    chinese = http.get("/app/manifest.webmanifest", headers={"Accept-Language": "zh-HK"})
    assert chinese.json()["name"] == "Strongroom 錢包" and chinese.json()["lang"] == "zh-Hant"


def test_service_worker_is_served_for_the_app_scope(http: httpx.Client) -> None:
    response = http.get("/app/sw.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "no-cache"
    shell = json.loads(re.search(r"const SHELL = (\[.*?\]);", response.text).group(1))
    assert "/app/offline" in shell
    assert any(url.startswith("/static/web/lite.css?v=") for url in shell)
    assert any(url.startswith("/static/web/base.css?v=") for url in shell)
    for url in shell:
        assert http.get(url).status_code == 200, url
    assert http.get("/app/offline").headers["cache-control"] == "no-cache"


def test_no_table_is_touched_by_reading_pages(http: httpx.Client, pg_db: Engine) -> None:
    before = fingerprint(pg_db)
    for path in (*PAGES, "/app/", "/app/manifest.webmanifest", "/app/sw.js"):
        http.get(path)
    assert fingerprint(pg_db) == before


def test_every_web_file_is_packaged() -> None:
    root = Path(core.__file__).resolve().parents[3]
    package = root / "src" / "strongroom"
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["strongroom"]
    files = [
        path.relative_to(package).as_posix()
        for folder in ("web/templates", "web/static", "web/locale")
        for path in (package / folder).rglob("*")
        if path.is_file()
    ] + ["web/README.md", "web/babel.cfg"]
    assert len(files) >= 20
    for name in files:
        assert any(_glob_match(name, pattern) for pattern in patterns), name
