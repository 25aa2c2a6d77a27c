"""The Lite bank accounts screen and sending by phone number in headless Chromium, under the
CSP (issue #12 items 2 and 4), in both languages, with screenshots
(artifacts/screenshots/lite-bank-accounts*-<language>-*.png, lite-send-phone-*): link an
account in one's own legal name (a name that is not refused), see it masked, remove it with
the password (the withdrawal freeze shows), and send to another user by their phone number."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.banking.models import BankAccount
from strongroom.identity.models import User
from strongroom.notify.models import OutboxEmail

from .conftest import Console, WebUser, sandbox_topup, web_user
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
WORDS = {
    "en": {
        "bank_accounts": "Bank accounts",
        "send": "Send",
        "link": "Link account",
        "remove": "Remove this account",
        "mismatch": "The account holder must be you",
        "linked": "The bank account was linked.",
        "removed": "The bank account was removed.",
        "wrong_password": "Your password is wrong.",
        "kyc": "Verify your identity first",
        "continue": "Continue",
        "send_to": "Send to {name}",
        "sent_to": "Sent to {name}",
        "no_user": "There is no Strongroom user with that email, phone number or user id.",
        "phone_link": "Let others send you money by your phone number",
        "save_phone": "Save phone number",
        "phone_saved": "Your phone number was saved: others can now send you money by it.",
        "bad_phone": "This is not a valid phone number",
    },
    "zh_Hant": {
        "bank_accounts": "銀行戶口",
        "send": "轉帳",
        "link": "連結戶口",
        "remove": "移除此戶口",
        "mismatch": "戶口持有人必須是你本人",
        "linked": "銀行戶口已連結。",
        "removed": "銀行戶口已移除。",
        "wrong_password": "你的密碼不正確。",
        "kyc": "請先核實身份",
        "continue": "繼續",
        "send_to": "轉帳給 {name}",
        "sent_to": "已轉帳給 {name}",
        "no_user": "沒有使用此電郵、電話號碼或用戶編號的 Strongroom 用戶。",
        "phone_link": "讓其他人以你的電話號碼轉帳給你",
        "save_phone": "儲存電話號碼",
        "phone_saved": "你的電話號碼已儲存：其他人現在可以用它轉帳給你。",
        "bad_phone": "這不是有效的電話號碼",
    },
}


def _set(engine: Engine, email: str, **values: object) -> None:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.execute(update(User).where(User.email == email).values(**values))


def _nav(page: Page, label: str) -> None:
    page.locator("nav.tabs").get_by_role("link", name=label, exact=True).click()


def _signed_in(page: Page, live_url: str, language: str, user: WebUser) -> None:
    _sign_in(page, live_url, language, user, user.password)
    page.wait_for_url(f"{live_url}/app/")


@pytest.mark.parametrize("language", LANGUAGES)
def test_link_and_remove_a_bank_account(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    user = web_user(pg_db, "Chan")
    page = open_page(language)
    _signed_in(page, live_url, language, user)
    _nav(page, words["bank_accounts"])
    page.wait_for_url(f"{live_url}/app/bank-accounts")
    expect(page.locator(".freeze")).to_contain_text(words["kyc"])  # no verified name yet
    _shoot(page, "bank-accounts-kyc", language)
    _set(pg_db, user.email, legal_name="CHAN Tai Man")
    page.reload()
    page.fill("#holder_name", "Chan Tai")
    page.fill("#bank_code", "004")
    page.fill("#account_number", "012-345-6789")
    page.fill("#password", user.password)
    page.get_by_role("button", name=words["link"]).click()
    expect(page.locator(".alert")).to_contain_text(words["mismatch"])
    expect(page.locator("#account_number")).to_have_value("012-345-6789")  # kept as typed
    expect(page.locator("#password")).to_have_value("")  # never sent back
    _shoot(page, "bank-accounts-refused", language)
    page.fill("#holder_name", "tai-man, CHAN")
    page.fill("#password", user.password)
    page.get_by_role("button", name=words["link"]).click()
    page.wait_for_url(f"{live_url}/app/bank-accounts")
    expect(page.locator(".success")).to_have_text(words["linked"])
    row = page.locator(".bank-account")
    expect(row).to_have_count(1)
    expect(row.locator(".bank-account-number")).to_have_text("004 ****6789")
    assert "0123456789" not in page.content()
    _shoot(page, "bank-accounts", language)

    row.locator("input[name=password]").fill("not-the-password")
    row.get_by_role("button", name=words["remove"]).click()
    expect(page.locator(".bank-account .alert")).to_have_text(words["wrong_password"])
    page.locator(".bank-account input[name=password]").fill(user.password)
    page.locator(".bank-account").get_by_role("button", name=words["remove"]).click()
    page.wait_for_url(f"{live_url}/app/bank-accounts")
    expect(page.locator(".success")).to_contain_text(words["removed"])
    expect(page.locator(".freeze")).to_be_visible()  # R-SEC-5: withdrawals paused
    expect(page.locator(".bank-account")).to_have_count(0)
    _shoot(page, "bank-accounts-removed", language)
    with db.make_session_factory(pg_db)() as session:
        (account,) = session.scalars(select(BankAccount)).all()
    assert account.removed_at is not None and account.account_number == "0123456789"
    refusals = ("status of 401", "status of 422")  # the refused forms' answers
    assert not [e for e in console.errors if not any(text in e for text in refusals)]


@pytest.mark.parametrize("language", LANGUAGES)
def test_send_by_phone_number(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    user, friend = web_user(pg_db, "Chan"), web_user(pg_db, "Mei")
    _set(pg_db, friend.email, phone="+85251234567")
    sandbox_topup(pg_db, user.email, "100")
    page = open_page(language)
    _signed_in(page, live_url, language, user)
    _nav(page, words["send"])
    page.fill("#to", "6123 4567")  # nobody's number
    page.fill("#amount", "12.50")
    page.get_by_role("button", name=words["continue"]).click()
    expect(page.locator(".alert")).to_have_text(words["no_user"])
    page.fill("#to", "5123 4567")
    page.fill("#amount", "12.50")
    _shoot(page, "send-phone", language)
    page.get_by_role("button", name=words["continue"]).click()
    expect(page.locator(".recipient")).to_have_text("M**")
    page.get_by_role("button", name=words["send_to"].format(name="M**")).click()
    page.wait_for_url(re.compile(r"/app/receipts/"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words["sent_to"].format(name="Mei"))
    transfer_id = page.url.rsplit("/", 1)[-1]
    with db.make_session_factory(pg_db)() as session:
        receipts = session.scalars(
            select(OutboxEmail.to_address).where(
                OutboxEmail.template_id.like("payments.p2p_%"),
                OutboxEmail.context.contains(transfer_id),
            )
        ).all()
    assert sorted(receipts) == sorted([user.email, friend.email])
    assert not [e for e in console.errors if "status of 404" not in e]  # the refused form


@pytest.mark.parametrize("language", LANGUAGES)
def test_set_the_phone_number(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    user = web_user(pg_db, "Mei")
    page = open_page(language)
    _signed_in(page, live_url, language, user)
    _nav(page, words["send"])
    page.get_by_role("link", name=words["phone_link"]).click()
    page.wait_for_url(f"{live_url}/app/phone")
    page.fill("#phone", "12345")
    page.get_by_role("button", name=words["save_phone"]).click()
    expect(page.locator(".alert")).to_contain_text(words["bad_phone"])
    _shoot(page, "phone-refused", language)
    page.fill("#phone", "5123 4567")
    page.get_by_role("button", name=words["save_phone"]).click()
    page.wait_for_url(f"{live_url}/app/phone")
    expect(page.locator(".success")).to_have_text(words["phone_saved"])
    expect(page.locator("#phone")).to_have_value("+85251234567")
    _shoot(page, "phone", language)
    with db.make_session_factory(pg_db)() as session:
        phone = session.scalars(select(User.phone).where(User.email == user.email)).one()
    assert phone == "+85251234567"
    assert not [e for e in console.errors if "status of 422" not in e]  # the refused form
