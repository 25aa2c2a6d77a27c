"""The portal's settlements and batch payouts in Chromium, in English and Traditional Chinese
(issue #13, item 1): a finance member opens the day's settlement, uploads a payout file with a
bad row (refused as a whole, the row's problem shown), then a good one, checks the rows,
confirms, and follows the batch to its result once the worker has paid it. Screenshots:
``artifacts/screenshots/merchant-{settlements,settlement,payouts-refused,payouts-check,
payout-batch}-<language>-{mobile,desktop}.png``; and the console's merchants screen with a
suspended shop: ``console-merchants-<language>-*.png``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.settlement import batch_payouts
from strongroom.settlement import service as settlement
from tests.api.conftest import make_settings

from .conftest import Console, WebUser, screenshot, settle
from .console_support import browser_sign_in, make_operator
from .merchant_support import charge, hire, payer, shop

OpenPage = Callable[..., Page]
HEADER = "reference,holder_name,bank_code,account_number,asset,amount\n"
GOOD = HEADER + (
    "sup-1,Tea Leaf Supplier Ltd,004,123456780,HKD,30.00\n"
    "staff-7,Chan Tai Man,024,998877665,HKD,12.50\n"
)
BAD = GOOD + "sup-1,Tea Leaf Supplier Ltd,004,123456780,HKD,1.005\n"
TEXT = {
    "en": {
        "paid_out": "Paid out",
        "refused": "Nothing was paid",
        "valid": "Every row is valid",
        "done": "Done",
        "suspended": "Suspended",
    },
    "zh_Hant": {
        "paid_out": "已付出",
        "refused": "未付出任何款項",
        "valid": "每一行均有效",
        "done": "完成",
        "suspended": "已暫停",
    },
}


def _sign_in(page: Page, url: str, person: WebUser) -> None:
    page.goto(f"{url}/merchant/signin")
    page.fill("#email", person.email)
    page.fill("#password", person.password)
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(f"{url}/merchant/")


def _shoot(page: Page, screen: str, language: str) -> None:
    settle(page)
    screenshot(page, f"{screen}-{language}")


def _settle_today(engine: Engine) -> None:
    settings = make_settings(engine)
    now = db.utcnow()
    settlement.settle(
        db.make_session_factory(engine),
        settings.settlement,
        settings.asset_registry(),
        day=settlement.local_day(now, settings.settlement.timezone),
        now=now + timedelta(days=2),
    )


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_finance_reads_the_settlement_and_pays_a_checked_file(
    language: str,
    live_url: str,
    pg_db: Engine,
    open_page: OpenPage,
    console: Console,
    tmp_path: Path,
) -> None:
    words = TEXT[language]
    merchant_id = shop(pg_db)
    customer = payer(pg_db)
    charge(pg_db, merchant_id, customer.email, "120.00")
    _settle_today(pg_db)
    charge(pg_db, merchant_id, customer.email, "88.00")  # today's, in the wallet for payouts
    finance = hire(pg_db, merchant_id, "finance")

    page = open_page(language)
    _sign_in(page, live_url, finance)
    page.locator('nav.side a[href="/merchant/settlements"]').click()
    row = page.locator("tr[data-settlement]")
    expect(row).to_contain_text("119.04")  # 120.00 less 0.96 fees
    expect(row).to_contain_text(words["paid_out"])
    _shoot(page, "merchant-settlements", language)
    row.locator("a").click()
    expect(page.locator("dd.settlement-net")).to_contain_text("119.04")
    _shoot(page, "merchant-settlement", language)

    page.locator('nav.side a[href="/merchant/payouts"]').click()
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    page.set_input_files("#file", str(bad))
    page.locator("form.form button[type=submit]").click()
    expect(page.locator("p.alert")).to_contain_text(words["refused"])
    expect(page.locator('tr[data-problem="duplicate_reference"]')).to_be_visible()
    expect(page.locator('tr[data-problem="invalid_amount"]')).to_be_visible()
    _shoot(page, "merchant-payouts-refused", language)

    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    page.set_input_files("#file", str(good))
    page.locator("form.form button[type=submit]").click()
    expect(page.locator("p.notice")).to_contain_text(words["valid"])
    expect(page.locator('tr[data-reference="staff-7"]')).to_contain_text("12.50")
    _shoot(page, "merchant-payouts-check", language)
    page.locator("form.form button.primary").click()
    page.wait_for_url(f"{live_url}/merchant/payouts/pb_*")
    batch_id = page.url.rsplit("/", 1)[1]
    ran = batch_payouts.run_batch(
        db.make_session_factory(pg_db), make_settings(pg_db).asset_registry(), batch_id=batch_id
    )
    assert (ran.paid, ran.failed) == (2, 0)
    page.reload()
    expect(page.locator("dd.batch-status")).to_contain_text(words["done"])
    expect(page.locator('tr[data-status="paid"]')).to_have_count(2)
    _shoot(page, "merchant-payout-batch", language)
    assert not [e for e in console.errors if "status of 422" not in e]  # the refused file


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_an_admin_suspends_a_shop_in_the_console(
    language: str, live_url: str, pg_db: Engine, open_page: OpenPage, console: Console
) -> None:
    merchant_id = shop(pg_db)
    shop(pg_db, "Shenzhen Noodles", region="CN")
    admin = make_operator(pg_db, "admin")
    page = open_page(language)
    browser_sign_in(page, live_url, admin)
    page.goto(f"{live_url}/console/merchants")
    row = page.locator(f'tr[data-merchant="{merchant_id}"]')
    row.locator("input[name=reason]").fill("Chargebacks under review")
    row.locator("button[type=submit]").click()
    expect(page.locator("p.notice")).to_be_visible()
    row = page.locator(f'tr[data-merchant="{merchant_id}"]')
    expect(row).to_have_attribute("data-status", "suspended")
    expect(row).to_contain_text(TEXT[language]["suspended"])
    expect(row).to_contain_text("Chargebacks under review")
    _shoot(page, "console-merchants", language)
    assert console.errors == []
