"""The demo (``strongroom demo``) and the console on it: ``--no-serve`` builds the data and
prints both addresses and every login; served, the outbox worker delivers over real SMTP to the
demo's mail sink and the console's Inbox shows those emails (the anti-phishing banner on the
ones sent after the code was set); and screenshots of every console screen, at phone and
desktop size, in both languages (``artifacts/screenshots/console-*.png``), on the demo's data."""

from __future__ import annotations

import mailbox
import os
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pyotp
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from strongroom import db
from strongroom import demo as demo_data
from strongroom.cli import app as cli
from strongroom.identity import two_factor
from strongroom.identity.models import AuditEvent, User
from strongroom.ledger import reports
from strongroom.merchants.models import Charge, Merchant, MerchantMember
from strongroom.notify.models import SENT, OutboxEmail
from strongroom.reserves import service as reserves
from strongroom.settings import get_settings
from strongroom.web.console import inbox

from .conftest import Console, WebUser, screenshot, settle
from .console_support import (
    DemoSite,
    browser_sign_in,
    demo_site,
    make_operator,
    wait_for_delivery,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
LANGUAGES = ("en", "zh_Hant")
SECRET = re.compile(r"TOTP secret ([A-Z2-7]{32})")
TEXT = {
    "en": {
        "sign_in": "Operator sign in",
        "code": "Two-step verification",
        "wrong": "The email or password is wrong.",
        "dashboard": "Dashboard",
        "users": "Users",
        "audit": "Audit log",
        "outbox": "Email outbox",
        "inbox": "Inbox",
        "forbidden": "Not for your role",
        "not_found": "Page not found",
        "search": "Search",
    },
    "zh_Hant": {
        "sign_in": "營運人員登入",
        "code": "兩步驟驗證",
        "wrong": "電郵或密碼不正確。",
        "dashboard": "總覽",
        "users": "用戶",
        "audit": "審計記錄",
        "outbox": "電郵發件匣",
        "inbox": "收件匣",
        "forbidden": "你的角色無權使用",
        "not_found": "找不到頁面",
        "search": "搜尋",
    },
}


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


@pytest.fixture
def isolated_env() -> Iterator[None]:
    """``strongroom demo`` sets STRONGROOM_ENV and the database URL: put them back after."""
    names = ("STRONGROOM_ENV", "STRONGROOM_DATABASE_URL")
    saved = {name: os.environ.get(name) for name in names}
    get_settings.cache_clear()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


def test_demo_no_serve_builds_the_data_and_prints_the_addresses_and_logins(
    tmp_path: Path, isolated_env: None
) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--no-serve", "--port", "8123", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "http://127.0.0.1:8123/app" in out and "http://127.0.0.1:8123/console" in out
    for email in ("alice@demo.strongroom.local", "dan@demo.strongroom.local"):
        assert email in out
    operators = {
        line.split()[1]: line for line in out.splitlines() if SECRET.search(line) is not None
    }
    assert set(operators) == {"(admin)", "(support)"}
    assert "http://127.0.0.1:8123/merchant" in out
    terminal = next(line for line in out.splitlines() if "merchant terminal" in line)
    assert demo_data.SHOP_NAME in terminal and re.search(r"X-Api-Key srk_\S{20,}", terminal)
    assert any(demo_data.SHOP_OWNER[1] in line for line in out.splitlines() if "owner" in line)
    secrets = [SECRET.search(line) for line in operators.values()]
    assert all(secrets) and demo_data.ADMIN_EMAIL in operators["(admin)"]
    engine = db.make_engine(f"sqlite:///{tmp_path / demo_data.DATABASE_FILE}")
    try:
        with db.make_session_factory(engine)() as session:
            users = list(session.scalars(select(User)))
            assert len(users) == len(demo_data.USERS) + 2 + 1  # and the shop's owner
            roles = {user.email: user.operator_role for user in users if user.operator_role}
            assert roles == {demo_data.ADMIN_EMAIL: "admin", demo_data.SUPPORT_EMAIL: "support"}
            assert all(two_factor.is_enabled(user) for user in users if user.operator_role)
            alice = next(user for user in users if user.email.startswith("alice@"))
            assert alice.anti_phishing_code == demo_data.ANTI_PHISHING_CODE
            failed = session.scalar(select(func.count()).where(AuditEvent.action == "login.failed"))
            assert failed == 1  # Bob's wrong password
            audit = reserves.latest(session=session)
            view = reserves.summary(session=session, audit=audit)
            assert Path(audit.tree_dir).is_relative_to(tmp_path / demo_data.AUDITS)
            owed = {code for code, total in view["totals"].items() if Decimal(total) > 0}
            assert owed == {"HKD", "CNY", "BTC", "USDT"}
            assert all(Decimal(view["ratios"][code]) >= 1 for code in owed)  # fully reserved
            check = reports.check(session=session)
            moved = len(demo_data.TOPUPS) + len(demo_data.TRANSFERS)
            assert check.ok and check.transfers == moved + 2 * len(demo_data.CHARGES)  # and fees
            shop = session.scalars(select(Merchant)).one()
            assert (shop.name, shop.status) == (demo_data.SHOP_NAME, "active")
            owner = session.scalars(
                select(MerchantMember).where(MerchantMember.merchant_id == shop.id)
            ).one()
            assert owner.role == "owner"
            assert session.get_one(User, owner.user_id).email == demo_data.SHOP_OWNER[1]
            charged = list(session.scalars(select(Charge.amount_minor)))
            assert charged == [3850]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """The demo, served as ``strongroom demo`` serves it, its emails delivered."""
    with demo_site(tmp_path_factory.mktemp("demo")) as site:
        wait_for_delivery(site.engine)
        yield site


def _demo_admin(site: DemoSite) -> WebUser:
    login = next(login for login in site.logins if login.email == demo_data.ADMIN_EMAIL)
    return WebUser(login.email, login.password, "Demo Administrator", login.totp_secret)


def _articles(html: str) -> list[str]:
    return re.findall(r'<article class="card mail".*?</article>', html, re.S)


def _inbox_articles(client: httpx.Client) -> list[str]:
    """Every email of the inbox, page after page (a page past the last shows the last again).
    The worker keeps delivering while the test runs (the operator's own sign-in alert), so the
    demo's emails need not all be on the first page."""
    found: list[str] = []
    previous: list[str] = []
    for number in range(1, inbox.PAGES_MAX + 1):
        page = _articles(client.get("/console/inbox", params={"page": number}).text)
        if not page or page == previous:
            break
        found.extend(page)
        if len(page) < inbox.PAGE_SIZE:
            break
        previous = page
    return found


def test_the_inbox_shows_what_the_worker_delivered_over_smtp(demo: DemoSite) -> None:
    with db.make_session_factory(demo.engine)() as session:
        sent = session.scalar(select(func.count()).where(OutboxEmail.status == SENT))
    box = mailbox.Maildir(demo.maildir, create=False)
    assert sent and len(box) == sent  # every email the outbox sent is in the sink's Maildir
    admin = _demo_admin(demo)  # the printed login works: password, then a TOTP code
    assert admin.totp_secret is not None
    with httpx.Client(base_url=demo.url, timeout=30, follow_redirects=True) as client:
        form = client.get("/console/signin").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        data = {"csrf_token": token.group(1), "email": admin.email, "password": admin.password}
        code = client.post("/console/signin", data=data)
        assert str(code.url).endswith("/console/signin/code")
        otp = pyotp.TOTP(admin.totp_secret).now()
        home = client.post("/console/signin/code", data={"csrf_token": token.group(1), "otp": otp})
        assert str(home.url).endswith("/console/") and 'href="/console/inbox"' in home.text
        articles = _inbox_articles(client)
    assert articles
    welcome = [a for a in articles if "Welcome to Strongroom, Alice Chan" in a]
    assert len(welcome) == 1
    assert "alice@demo.strongroom.local" in welcome[0]
    assert 'class="banner"' not in welcome[0]  # sent before she set her code
    assert "Your Strongroom account is ready" in welcome[0]  # the text part
    changed = [a for a in articles if 'data-template="security.settings_changed"' in a]
    assert len(changed) == 1
    code_shown = f'Anti-phishing code: <strong class="code">{demo_data.ANTI_PHISHING_CODE}</strong>'
    assert code_shown in changed[0]
    alerts = [
        a
        for a in articles
        if 'data-template="security.login_alert"' in a and "alice@demo.strongroom.local" in a
    ]
    assert alerts and all(code_shown in a for a in alerts)  # Alice's sign-in, after the code
    assert all('class="banner"' not in a for a in articles if "bob@demo" in a)


def _shoot(page: Page, screen: str, language: str) -> None:
    settle(page)
    screenshot(page, f"console-{screen}-{language}")


@pytest.mark.parametrize("language", LANGUAGES)
def test_screenshots_of_every_console_screen(
    language: str, demo: DemoSite, open_page: OpenPage, console: Console
) -> None:
    """artifacts/screenshots/console-<screen>-<language>-{mobile,desktop}.png, for people to
    look at after a run; each screen is checked to be the one named."""
    words, url = TEXT[language], demo.url
    page = open_page(language)

    def heading(text: str) -> None:
        expect(page.get_by_role("heading", level=1)).to_have_text(text)

    page.goto(f"{url}/console/signin")
    heading(words["sign_in"])
    _shoot(page, "signin", language)
    page.fill("#email", demo_data.ADMIN_EMAIL)
    page.fill("#password", "not-the-password")
    page.locator("form.form button[type=submit]").click()
    expect(page.locator(".alert")).to_have_text(words["wrong"])
    _shoot(page, "signin-refused", language)
    admin = make_operator(demo.engine, "admin")  # a code is accepted once: one per sign-in
    page.fill("#email", admin.email)
    page.fill("#password", admin.password)
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(f"{url}/console/signin/code")
    heading(words["code"])
    _shoot(page, "signin-code", language)
    assert admin.totp_secret is not None
    page.fill("#otp", pyotp.TOTP(admin.totp_secret).now())
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(f"{url}/console/")
    heading(words["dashboard"])
    users = len(demo_data.USERS) + 1  # and the demo shop's owner
    expect(page.locator('[data-figure="users"] .value')).to_have_text(str(users))
    _shoot(page, "dashboard", language)
    page.goto(f"{url}/console/users?q=demo.strongroom")
    heading(words["users"])
    _shoot(page, "users", language)
    page.get_by_role("link", name="alice@demo.strongroom.local").click()
    heading("Alice Chan")
    expect(page.locator('table.balances [data-asset="HKD"] td').first).to_have_text("899.50")
    _shoot(page, "user", language)
    page.goto(f"{url}/console/audit")
    heading(words["audit"])
    _shoot(page, "audit", language)
    page.goto(f"{url}/console/outbox")
    heading(words["outbox"])
    _shoot(page, "outbox", language)
    page.goto(f"{url}/console/inbox")
    heading(words["inbox"])
    expect(page.locator("article.mail").first).to_be_visible()
    _shoot(page, "inbox", language)
    page.goto(f"{url}/console/no-such-screen")
    heading(words["not_found"])
    _shoot(page, "not-found", language)
    support = open_page(language)
    browser_sign_in(support, url, make_operator(demo.engine, "support"))
    support.goto(f"{url}/console/audit")
    expect(support.get_by_role("heading", level=1)).to_have_text(words["forbidden"])
    settle(support)
    screenshot(support, f"console-forbidden-{language}")
    expected = ("status of 401", "status of 403", "status of 404")
    assert not [e for e in console.errors if not any(text in e for text in expected)]
