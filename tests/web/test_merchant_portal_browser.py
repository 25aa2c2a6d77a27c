"""The merchant portal in Chromium, in English and Traditional Chinese: an owner signs in,
sees the charges, refunds part of one, makes a terminal key that is shown once; a cashier
charges a customer's payment code at the till and the payment is announced (speech synthesis
has no audio in headless Chromium: the page shows the sentence it announced, ``#announced``).
Screenshots: ``artifacts/screenshots/merchant-<screen>-<language>-{mobile,desktop}.png``."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.engine import Engine

from .conftest import Console, WebUser, screenshot, settle
from .merchant_support import charge, hire, payer, payment_code, shop

OpenPage = Callable[..., Page]
TEXT = {
    "en": {
        "refunded": "The refund was made.",
        "partly": "Partly refunded",
        "announced": "Payment received: 100.00 Hong Kong dollars",
        "paid": "Payment received",
    },
    "zh_Hant": {
        "refunded": "已完成退款。",
        "partly": "部分退款",
        "announced": "已收款 100.00 港元",
        "paid": "已收款",
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
    screenshot(page, f"merchant-{screen}-{language}")


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_owner_refunds_and_keys_and_a_cashier_s_till_announces(
    language: str, live_url: str, pg_db: Engine, open_page: OpenPage, console: Console
) -> None:
    words = TEXT[language]
    merchant_id = shop(pg_db)
    customer = payer(pg_db)
    charge_id = charge(pg_db, merchant_id, customer.email, "88.00")
    owner = hire(pg_db, merchant_id, "owner")
    cashier = hire(pg_db, merchant_id, "cashier")

    page = open_page(language)
    _sign_in(page, live_url, owner)
    expect(page.locator(f'tr[data-charge="{charge_id}"]')).to_be_visible()
    _shoot(page, "charges", language)

    page.locator(f'a[href="/merchant/charges/{charge_id}"]').click()
    page.fill("#amount", "40.00")
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(re.compile(r".*\?refunded=1$"))
    expect(page.locator("p.notice")).to_have_text(words["refunded"])
    expect(page.locator("dl.facts")).to_contain_text(words["partly"])
    expect(page.locator("dd.charge-refunded")).to_contain_text("40.00")
    _shoot(page, "refund", language)

    page.goto(f"{live_url}/merchant/keys")
    page.fill("#name", "Till 1")
    page.locator("form.form button[type=submit]").click()
    key = page.locator("#new-key")
    expect(key).to_have_text(re.compile(r"^\S{20,}$"))
    shown = key.inner_text()
    _shoot(page, "keys", language)
    page.goto(f"{live_url}/merchant/keys")
    expect(page.locator("tr[data-key] td").first).to_have_text("Till 1")
    assert page.locator("#new-key").count() == 0 and shown not in page.content()

    till = open_page(language)
    _sign_in(till, live_url, cashier)
    till.goto(f"{live_url}/merchant/pos")
    expect(till.locator("#speak")).to_be_checked()
    till.fill("#payment_code", payment_code(pg_db, customer.email))
    till.fill("#amount", "100.00")
    till.locator("form.pos-form button[type=submit]").click()
    till.wait_for_url(re.compile(r".*/merchant/pos\?paid=ch_.*"))
    expect(till.locator("#paid-title")).to_have_text(words["paid"])
    expect(till.locator("#announced")).to_have_text(words["announced"])
    expect(till.locator("#announced")).to_have_attribute(
        "lang", "zh-HK" if language == "zh_Hant" else "en"
    )
    _shoot(till, "pos", language)
    till.locator("#speak").uncheck()
    till.reload()
    expect(till.locator("#announced")).to_have_attribute("data-spoken", "off")
    expect(till.locator("#announced")).to_have_text("")
    assert console.errors == []
