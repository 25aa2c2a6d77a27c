"""The Lite withdraw screen and the console's pending payouts (issue #12 items 3 and 9): over
HTTP (roles, refusals write nothing) and in headless Chromium under the CSP, in both languages,
with screenshots (``artifacts/screenshots/lite-withdraw*-<language>-*.png``,
``console-payouts-<language>-*.png``): withdraw to a linked bank account, see it pending, the
payout sweep pays it and the list says so; a bad amount is refused in the form."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.banking.models import BankAccount
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.withdrawals import service as withdrawals
from strongroom.withdrawals.models import Withdrawal
from tests.api.conftest import make_settings

from .conftest import (
    Console,
    WebUser,
    csrf_token,
    new_client,
    sandbox_topup,
    screenshot,
    settle,
    web_sign_in,
    web_user,
)
from .console_support import browser_sign_in, console_sign_in, make_operator
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
WORDS = {
    "en": {
        "withdraw": "Withdraw",
        "now": "Withdraw now",
        "completed": "Completed",
        "failed": "Failed: the money is back in your wallet",
        "payouts": "Pending payouts",
    },
    "zh_Hant": {
        "withdraw": "提款",
        "now": "立即提款",
        "completed": "已完成",
        "failed": "失敗：款項已退回你的錢包",
        "payouts": "待處理付款",
    },
}


def ready(engine: Engine, name: str = "Chan") -> tuple[WebUser, list[int]]:
    """A verified (primary) user with HK$1,000 and two linked accounts: one pays (…1), one
    fails (…7)."""
    user = web_user(engine, name)
    sandbox_topup(engine, user.email, "1000.00")
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.execute(
            update(User)
            .where(User.email == user.email)
            .values(kyc_tier="primary", legal_name="Chan Tai Man")
        )
        user_id = session.scalars(select(User.id).where(User.email == user.email)).one()
        accounts = [
            BankAccount(
                user_id=user_id, holder_name="Chan Tai Man", bank_code="004", account_number=n
            )
            for n in ("12345671", "12345677")
        ]
        session.add_all(accounts)
        session.flush()
        ids = [a.id for a in accounts]
    return user, ids


def sweep(engine: Engine) -> withdrawals.Processed:
    return withdrawals.process_payouts(db.make_session_factory(engine), make_settings(engine))


def _count(engine: Engine) -> int:
    with db.make_session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Withdrawal)) or 0


def test_withdraw_over_http_and_the_payouts_screen_by_role(live_url: str, pg_db: Engine) -> None:
    user, (pays, fails) = ready(pg_db)
    with new_client(live_url) as http:
        web_sign_in(http, user)
        page = http.get("/app/withdraw")
        assert page.status_code == 200 and 'id="withdraw-form"' in page.text
        form = {"csrf_token": csrf_token(page.text), "asset": "HKD", "idempotency_key": "k1"}
        bad = http.post(
            "/app/withdraw", data={**form, "destination": f"bank:{pays}", "amount": "x"}
        )
        assert bad.status_code == 422 and 'role="alert"' in bad.text
        wrong = http.post(
            "/app/withdraw", data={**form, "destination": "bank:999999", "amount": "1.00"}
        )
        assert wrong.status_code == 404
        mismatch = http.post(
            "/app/withdraw",
            data={**form, "destination": f"bank:{pays}", "amount": "1", "asset": "USDT"},
        )
        assert mismatch.status_code == 422
        assert _count(pg_db) == 0
        for account, key in ((pays, "k2"), (fails, "k3")):
            done = http.post(
                "/app/withdraw",
                data={
                    **form,
                    "destination": f"bank:{account}",
                    "amount": "100.00",
                    "idempotency_key": key,
                },
            )
            assert done.status_code == 303, done.text
        again = http.post(
            "/app/withdraw",
            data={
                **form,
                "destination": f"bank:{pays}",
                "amount": "100.00",
                "idempotency_key": "k2",
            },
        )
        assert again.status_code == 303 and _count(pg_db) == 2  # the same form: once
        listing = http.get("/app/withdraw").text
        assert listing.count('data-status="pending"') == 2
    for role, allowed in (("admin", True), ("finance", True), ("support", False)):
        operator = make_operator(pg_db, role)
        with new_client(live_url) as http:
            console_sign_in(http, operator)
            shown = http.get("/console/payouts")
            assert shown.status_code == (200 if allowed else 403), role
            if allowed:
                assert shown.text.count('data-state="queued"') == 2
    assert sweep(pg_db).paid == 1
    with new_client(live_url) as http:
        web_sign_in(http, user)
        listing = http.get("/app/withdraw").text
        assert 'data-status="completed"' in listing and 'data-status="failed"' in listing
    with db.make_session_factory(pg_db)() as session:
        assert reports.check(session=session).ok


@pytest.mark.parametrize("language", LANGUAGES)
def test_withdraw_in_the_browser(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    user, (pays, fails) = ready(pg_db)
    page = open_page(language)
    _sign_in(page, live_url, language, user, user.password)
    page.wait_for_url(f"{live_url}/app/")
    page.locator("nav.tabs").get_by_role("link", name=words["withdraw"], exact=True).click()
    page.wait_for_url(f"{live_url}/app/withdraw")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["withdraw"])
    _shoot(page, "withdraw", language)
    page.select_option("#destination", f"bank:{pays}")
    page.select_option("#asset", "HKD")
    page.fill("#amount", "12,5")
    page.get_by_role("button", name=words["now"]).click()
    expect(page.locator("#withdraw-form").locator("..").locator(".alert")).to_be_visible()
    _shoot(page, "withdraw-refused", language)
    for account in (pays, fails):
        page.select_option("#destination", f"bank:{account}")
        page.select_option("#asset", "HKD")
        page.fill("#amount", "100.00")
        page.get_by_role("button", name=words["now"]).click()
        page.wait_for_url(f"{live_url}/app/withdraw")
        expect(page.locator(".withdrawal")).to_have_count(1 if account == pays else 2)
    expect(page.locator('.withdrawal[data-status="pending"]')).to_have_count(2)
    operator = make_operator(pg_db, "finance")
    desk = open_page(language)
    browser_sign_in(desk, live_url, operator)
    desk.goto(f"{live_url}/console/payouts")
    expect(desk.get_by_role("heading", level=1)).to_have_text(words["payouts"])
    expect(desk.locator("tr[data-withdrawal]")).to_have_count(2)
    settle(desk)
    screenshot(desk, f"console-payouts-{language}")
    sweep(pg_db)
    page.reload()
    expect(page.locator('.withdrawal[data-status="completed"] .withdrawal-status')).to_have_text(
        words["completed"]
    )
    expect(page.locator('.withdrawal[data-status="failed"] .withdrawal-status')).to_have_text(
        words["failed"]
    )
    _shoot(page, "withdraw-status", language)
    assert not [e for e in console.errors if "status of 422" not in e]  # the refused form
