"""Browser tests: the app on a real uvicorn over PostgreSQL, driven by Debian's Chromium through
Playwright (never ``playwright install``: nothing is downloaded). Without Chromium the browser
tests are skipped with the install command, except under ``CI=true``, where that is a failure."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.app import create_app
from strongroom.db import Base
from strongroom.errors import Unauthorized
from strongroom.funding import service as funding
from strongroom.identity import service as identity
from strongroom.identity import verification
from strongroom.identity.models import AuthToken
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.reserves import service as reserves
from strongroom.reserves.audit import Audit
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.service import ReserveLine
from strongroom.reserves.snapshot import from_ledger
from strongroom.settings import LimitsSettings, get_settings
from strongroom.web import core
from tests.api.conftest import PASSWORD, Caller, make_settings, signup
from tests.conftest import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = "apt-get update && apt-get install -y chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORTS = {"mobile": (390, 844), "desktop": (1280, 800)}
AUDIT_ID = "2026-12-01"
CREATED_AT = datetime(2026, 12, 1, tzinfo=UTC)
SECRET = bytes(range(32))
WAIT_MS = 15_000


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run; {INSTALL_HINT})")
    pytest.skip(f"{reason}: install it with `{INSTALL_HINT}`")


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@dataclass
class Console:
    """Everything the page said was wrong: console errors, uncaught exceptions, CSP refusals."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    console.attach(opened)
    yield opened
    context.close()


def settle(page: Page) -> None:
    """Wait until the page has loaded and, where it gets there in time, gone quiet on the
    network, before a screenshot. Tests check what a page shows before they shoot it, so a
    machine too busy to reach network idle (an htmx preview still settling) gets its picture,
    not a failure."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_load_state("load")
    with suppress(PlaywrightTimeout):
        page.wait_for_load_state("networkidle", timeout=5_000)


def screenshot(page: Page, name: str) -> None:
    """``artifacts/screenshots/<name>-mobile.png`` (390x844) and ``-desktop.png`` (1280x800)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in VIEWPORTS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    return create_app(make_settings(pg_db), pg_db)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn on a loopback port, in a thread (as tests/api's live_url)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The app over the PostgreSQL test database."""
    with serving(app) as url:
        yield url


@pytest.fixture
def sqlite_url(sqlite_db: Engine) -> Iterator[str]:
    """The app over SQLite: enough for the pages and static files, no PostgreSQL needed."""
    with serving(create_app(make_settings(sqlite_db), sqlite_db)) as url:
        yield url


# ------------------------------------------------------------------------------------------------
# A small published audit, built from the ledger with the Python builder


def fund(session: Session, user_id: str, asset: str, amount_minor: int) -> None:
    bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=asset)
    wallet = ledger.user_wallet(session=session, user_id=user_id, asset=asset)
    ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=bank.id,
            credit_account_id=wallet.id,
            asset=asset,
            amount_minor=amount_minor,
        ),
    )


@dataclass
class Published:
    audit: Audit
    directory: Path
    alice: Caller
    bob: Caller
    carol: Caller  # signed up, nothing in the audit

    def proof(self, caller: Caller) -> dict[str, Any]:
        server = ProofServer(self.directory)
        try:
            return server.proof(caller.user_id)
        finally:
            server.close()


@pytest.fixture
def published(live_url: str, pg_db: Engine, tmp_path: Path) -> Iterator[Published]:
    """Alice (HKD 123.45, USDT 7, BTC 0.05) and Bob (HKD 20.00) in audit 2026-12-01, with
    HKD 200.00 and USDT 5 of reserves recorded against it."""
    with httpx.Client(base_url=live_url, timeout=30) as client:
        alice, bob, carol = (
            signup(client, name, engine=pg_db) for name in ("Alice", "Bob", "Carol")
        )
    factory = db.make_session_factory(pg_db)
    with db.unit_of_work(factory) as session:
        fund(session, alice.user_id, "HKD", 123_45)
        fund(session, alice.user_id, "USDT", 7_000_000)
        fund(session, alice.user_id, "BTC", 5_000_000)
        fund(session, bob.user_id, "HKD", 20_00)
    scales = {a.code: a.scale for a in get_settings().asset_registry().all()}
    with factory() as session:
        snapshot = from_ledger(session=session, scales=scales)
    directory = tmp_path / "audit"
    audit = build(
        snapshot,
        directory,
        secret=SECRET,
        audit_id=AUDIT_ID,
        created_at=CREATED_AT,
        options=BuildOptions(workers=1),
    )
    lines = [
        ReserveLine("HKD", 200_00, "HSBC statement", "ab" * 32, date(2026, 12, 1)),
        ReserveLine("USDT", 5_000_000, "cold wallet", None, date(2026, 12, 1)),
    ]
    with db.unit_of_work(factory) as session:
        reserves.publish(session=session, audit=audit, tree_dir=str(directory), reserves=lines)
    yield Published(audit, directory, alice, bob, carol)


# ------------------------------------------------------------------------------------------------
# The Lite app (/app): browser pages per language, a cookie-keeping HTTP client, users


LOCALES = {"en": "en-US", "zh_Hant": "zh-HK"}
"""Browser locales (and so Accept-Language) that pick each catalog."""
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def open_page(browser: Browser, console: Console) -> Iterator[Callable[..., Page]]:
    """``open_page(language)``: a page in a fresh browser context (its own cookies and service
    workers) whose Accept-Language picks ``language``; console errors go to ``console``."""
    contexts: list[BrowserContext] = []

    def open_(language: str = "en") -> Page:
        context = browser.new_context(
            viewport={"width": 1280, "height": 800}, locale=LOCALES[language]
        )
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        opened = context.new_page()
        console.attach(opened)
        return opened

    yield open_
    for context in contexts:
        context.close()


def new_client(live_url: str) -> httpx.Client:
    """Another browser of the live server: its own cookies, redirects not followed."""
    return httpx.Client(base_url=live_url, timeout=30, follow_redirects=False)


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    """A browser of the live server (``new_client``), closed after the test."""
    with new_client(live_url) as client:
        yield client


def fingerprint(engine: Engine) -> dict[str, int]:
    """Row counts of every table: equal before and after means nothing was written."""
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }


def assert_locked_down(http: httpx.Client, response: httpx.Response) -> None:
    """A page of ours: the security headers, its scripts only from /static (no inline script,
    style or event handler: the CSP refuses them), and every static file it links served."""
    assert response.headers["content-security-policy"] == core.CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    html = response.text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all(re.search(r'\bsrc="/static/', a) and not b for a, b in scripts)
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html) and "hx-on" not in html
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert http.get(url).status_code == 200, url


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = CSRF_FIELD.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


@dataclass
class WebUser:
    """A user with a password, for the Lite app tests."""

    email: str
    password: str
    name: str
    totp_secret: str | None = None


def web_user(
    engine: Engine,
    name: str = "Alice",
    *,
    two_factor: bool = False,
    region: str = "HK",
    verified: bool = True,
) -> WebUser:
    """A user registered through the identity service, the email verified by the token its
    link carries (``verification.send_link`` then ``verify``, as the link does) unless
    ``verified`` is False, and 2FA turned on when asked (``totp_secret`` then says how to
    compute codes), in ``region``."""
    email = f"{name.lower()}.{uuid.uuid4().hex[:6]}@example.com"
    every = make_settings(engine)
    settings = every.auth
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        user = identity.register(
            session=session,
            email=email,
            password=PASSWORD,
            name=name,
            region=region,
            settings=settings,
        )
        if verified:
            token = verification.send_link(
                session=session, user=user, settings=settings, public_url=every.mail.public_url
            )
            verification.verify(session=session, token=token)
        secret = (
            identity.enrol_totp_now(session=session, user=user, settings=settings).secret
            if two_factor
            else None
        )
    return WebUser(email=email, password=PASSWORD, name=name, totp_secret=secret)


def sandbox_topup(
    engine: Engine,
    email: str,
    amount: str,
    asset: str = "HKD",
    limits: LimitsSettings | None = None,
) -> None:
    """Top up through the sandbox channel's service, as POST /v1/topups does, with the
    per-request cap (``funding.sandbox_max_topup``) raised: screens are tested with balances
    larger than one sandbox top-up may bring. ``limits``: the tier limits and T+N holds to
    apply (the tests' default has neither, so a crypto top-up is not locked)."""
    settings = make_settings(engine)
    if limits is not None:
        settings = settings.model_copy(update={"limits": limits})
    funding_settings = settings.funding.model_copy(
        update={
            "sandbox_max_topup": dict.fromkeys(settings.funding.sandbox_max_topup, "1000000000")
        }
    )
    settings = settings.model_copy(update={"funding": funding_settings})
    registry = settings.asset_registry()
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        user = identity.find_user(session=session, reference=email)
        assert user is not None
        funding.topup(
            session=session,
            user=user,
            amount=registry.money(amount, asset),
            channel="sandbox",
            settings=settings,
        )


def web_sign_in(client: httpx.Client, user: WebUser) -> httpx.Response:
    """Sign in through the Lite app's form (no 2FA), as a browser would."""
    token = csrf_token(client.get("/app/signin").text)
    response = client.post(
        "/app/signin",
        data={"csrf_token": token, "email": user.email, "password": user.password},
    )
    assert response.status_code == 303, response.text
    return response


def session_active(engine: Engine, token: str) -> bool:
    """Whether the session behind ``token`` (an ``sr_session`` cookie) still signs its browser
    in, as the app decides it. The session must exist: a token no session was issued for (a
    wrong cookie, an empty one) raises, and so does any other error, so that
    ``assert not session_active(...)`` holds only for a session signed out or expired."""
    digest = hashlib.sha256(token.encode()).hexdigest()  # only this is stored (R-SEC-6)
    with db.make_session_factory(engine)() as session:
        issued = session.scalar(select(AuthToken.id).where(AuthToken.token_hash == digest))
        if issued is None:
            raise LookupError(f"no session was ever issued for the token {token[:6]}...")
        try:
            identity.authenticate_session(session=session, token=token)
        except Unauthorized:  # this session's own refusal: revoked or expired
            return False
        return True
