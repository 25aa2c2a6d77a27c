"""The Lite "My data" screen (issue #11 item 7) in headless Chromium under the CSP, in both
languages, with screenshots (artifacts/screenshots/lite-privacy*-<language>-*.png): reached
from Security; the data download after the password (a ZIP with the user's data); closing the
account refused while money is held and without the confirmation; then closed and erased,
signed out, and the old email and password sign nobody in. Over HTTP: a wrong password and a
missing confirmation change nothing."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity.models import User
from strongroom.privacy import service as privacy

from .conftest import (
    Console,
    WebUser,
    csrf_token,
    fingerprint,
    sandbox_topup,
    web_sign_in,
    web_user,
)
from .console_support import console_sign_in, make_operator
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
WORDS = {
    "en": {
        "security": "Security",
        "my_data": "My data",
        "download": "Download my data",
        "erase": "Close and erase my account",
        "money": "Your account still holds money (HKD)",
        "closed": "Account closed",
        "wrong_password": "Your password is wrong.",
    },
    "zh_Hant": {
        "security": "安全",
        "my_data": "我的資料",
        "download": "下載我的資料",
        "erase": "關閉並刪除我的帳戶",
        "money": "你的帳戶仍有款項（HKD）",
        "closed": "帳戶已關閉",
        "wrong_password": "你的密碼不正確。",
    },
}


def _signed_in(page: Page, live_url: str, language: str, user: WebUser) -> None:
    _sign_in(page, live_url, language, user, user.password)
    page.wait_for_url(f"{live_url}/app/")


@pytest.mark.parametrize("language", LANGUAGES)
def test_download_my_data_then_close_and_erase_the_account(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    user = web_user(pg_db, "Mingyu")
    sandbox_topup(pg_db, user.email, "10.00")
    page = open_page(language)
    _signed_in(page, live_url, language, user)
    page.goto(f"{live_url}/app/security")
    page.get_by_role("link", name=words["my_data"]).click()
    page.wait_for_url(f"{live_url}/app/privacy")
    expect(page.locator("h1")).to_have_text(words["my_data"])
    _shoot(page, "privacy", language)

    page.fill("#export-password", "not-the-password")
    page.get_by_role("button", name=words["download"]).click()
    expect(page.locator(".privacy-export .alert")).to_contain_text(words["wrong_password"])
    page.fill("#export-password", user.password)
    with page.expect_download() as downloaded:
        page.get_by_role("button", name=words["download"]).click()
    path = downloaded.value.path()
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data.json"))
    assert data["profile"]["email"] == user.email
    assert data["transactions"], data

    # money is held: refused, with the reason
    page.check("input[name=confirm]")
    page.fill("#erase-password", user.password)
    page.get_by_role("button", name=words["erase"]).click()
    expect(page.locator(".privacy-erase .alert")).to_contain_text(words["money"])
    _shoot(page, "privacy-refused", language)

    # a user with nothing held closes the account
    empty = web_user(pg_db, "Jiwoo")
    other = open_page(language)
    _signed_in(other, live_url, language, empty)
    other.goto(f"{live_url}/app/privacy")
    other.check("input[name=confirm]")
    other.fill("#erase-password", empty.password)
    other.get_by_role("button", name=words["erase"]).click()
    expect(other.locator("h1")).to_have_text(words["closed"])
    _shoot(other, "privacy-erased", language)
    other.goto(f"{live_url}/app/")
    other.wait_for_url(f"{live_url}/app/signin*")
    with db.make_session_factory(pg_db)() as session:
        assert session.scalars(select(User).where(User.email == empty.email)).first() is None
        assert session.scalars(select(User).where(User.email == user.email)).one()
    _sign_in(other, live_url, language, empty, empty.password)
    expect(other.locator(".alert")).to_be_visible()  # the old email signs nobody in
    refusals = ("status of 401", "status of 409")  # the refused forms' answers
    assert not [e for e in console.errors if not any(text in e for text in refusals)]


def test_erasure_form_refusals_change_nothing(live_url: str, pg_db: Engine) -> None:
    user = web_user(pg_db, "Sora")
    with httpx.Client(base_url=live_url) as client:
        web_sign_in(client, user)
        token = csrf_token(client.get("/app/privacy").text)
        before = fingerprint(pg_db)
        unconfirmed = client.post(
            "/app/privacy/erase", data={"csrf_token": token, "password": user.password}
        )
        assert unconfirmed.status_code == 422
        assert "Tick the box" in unconfirmed.text
        assert fingerprint(pg_db) == before
        wrong = client.post(
            "/app/privacy/erase",
            data={"csrf_token": token, "password": "not-the-password", "confirm": "yes"},
        )
        assert wrong.status_code == 401
        with db.make_session_factory(pg_db)() as session:
            row = session.scalars(select(User).where(User.email == user.email)).one()
            assert row.erased_at is None
        assert client.get("/app/privacy").status_code == 200  # still signed in
        done = client.post(
            "/app/privacy/erase",
            data={"csrf_token": token, "password": user.password, "confirm": "yes"},
        )
        assert done.status_code == 200 and "Account closed" in done.text
        with db.make_session_factory(pg_db)() as session:
            erased = session.get_one(User, row.id)
            assert erased.email == privacy.pseudonym_email(row.id)
        assert client.get("/app/privacy", follow_redirects=False).status_code in (302, 303)


def test_the_download_is_a_zip_with_no_store(live_url: str, pg_db: Engine) -> None:
    user = web_user(pg_db, "Haru")
    with httpx.Client(base_url=live_url) as client:
        web_sign_in(client, user)
        token = csrf_token(client.get("/app/privacy").text)
        got = client.post(
            "/app/privacy/export", data={"csrf_token": token, "password": user.password}
        )
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/zip"
        assert "no-store" in got.headers.get("cache-control", "")
        with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
            assert json.loads(archive.read("data.json"))["profile"]["email"] == user.email


def test_the_console_shows_an_erased_user_as_erased(live_url: str, pg_db: Engine) -> None:
    user = web_user(pg_db, "Yuna")
    with httpx.Client(base_url=live_url) as client:
        web_sign_in(client, user)
        token = csrf_token(client.get("/app/privacy").text)
        done = client.post(
            "/app/privacy/erase",
            data={"csrf_token": token, "password": user.password, "confirm": "yes"},
        )
        assert done.status_code == 200
    with db.make_session_factory(pg_db)() as session:
        erased = session.scalars(select(User).where(User.erased_at.is_not(None))).one()
    support = make_operator(pg_db, role="support")
    with httpx.Client(base_url=live_url) as client:
        console_sign_in(client, support)
        shown = client.get(f"/console/users/{erased.id}")
        assert shown.status_code == 200
        assert 'data-state="erased"' in shown.text
        assert "Account closed and erased on" in shown.text
        assert privacy.pseudonym_email(erased.id) in shown.text
        assert user.email not in shown.text
