"""Institutional KYC in Chromium (R-KYC-4), in both languages with screenshots: the user fills
the organisation's form, adds member rows and removes one (app.js), attaches the files, ticks
the declaration and submits; a ``kyc_reviewer`` opens the submission in the console
(organisation, addresses, members, the documents through the audited viewer) and approves it;
the user's tier is then ``institutional``. Over HTTP in ``test_kyc_institutional_web.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.kyc.models import Member
from strongroom.settings import KycSettings
from tests.api.conftest import make_settings
from tests.api.kyc_support import minimal_pdf, noise_image

from .conftest import Console, web_user
from .console_support import browser_sign_in, make_operator
from .test_kyc_institutional_web import MEMBERS, ORGANISATION
from .test_kyc_web import screenshot_console
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
TEXT = {
    "en": {
        "institutional": "Institutional",
        "submit": "Submit for review",
        "waiting": "Waiting for review",
        "approve": "Approve",
        "approved": "Approved",
        "add": "Add a member",
    },
    "zh_Hant": {
        "institutional": "機構",
        "submit": "提交審核",
        "waiting": "等候審核",
        "approve": "批准",
        "approved": "已批准",
        "add": "新增成員",
    },
}


@pytest.fixture
def app(pg_db: Engine, tmp_path: Path) -> FastAPI:
    settings = make_settings(pg_db)
    kyc = KycSettings(documents_dir=str(tmp_path / "kyc-documents"))
    return create_app(settings.model_copy(update={"kyc": kyc}), pg_db)


def _fill_member(page: Page, index: int, member: dict[str, str], document: Path) -> None:
    page.select_option(f"#members-{index}-role", member["role"])
    page.fill(f"#members-{index}-legal_name", member["legal_name"])
    page.fill(f"#members-{index}-date_of_birth", member["date_of_birth"])
    page.fill(f"#members-{index}-nationality", member["nationality"])
    page.fill(f"#members-{index}-document_number", member["document_number"])
    page.fill(f"#members-{index}-ownership", member["ownership"])
    page.set_input_files(f"#members-{index}-document", str(document))


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_institutional_journey_in_the_browser(
    language: str,
    open_page: OpenPage,
    live_url: str,
    pg_db: Engine,
    console: Console,
    tmp_path: Path,
) -> None:
    words = TEXT[language]
    user = web_user(pg_db, "Harbour")
    photo, pdf = tmp_path / "id.jpg", tmp_path / "resolution.pdf"
    photo.write_bytes(noise_image("JPEG", size=240))
    pdf.write_bytes(minimal_pdf())
    structure = tmp_path / "structure.png"
    structure.write_bytes(noise_image("PNG", size=240))

    page = open_page(language)
    _sign_in(page, live_url, language, user, user.password)
    page.goto(f"{live_url}/app/kyc")
    page.locator("a[data-level=institutional]").click()
    expect(page.locator("[data-member]")).to_have_count(2)
    expect(page.locator("[data-remove-member]").first).to_be_visible()
    _shoot(page, "kyc-institutional", language)

    for name in ("name", "registration_number", "incorporation_country", "incorporated_on"):
        page.fill(f"#{name}", ORGANISATION[name])
    page.select_option("#organisation_type", ORGANISATION["organisation_type"])
    for name in ("registered_address", "registered_country", "business_address"):
        page.fill(f"#{name}", ORGANISATION[name])
    page.fill("#business_country", ORGANISATION["business_country"])

    # two rows more, the first of them removed again: rows 1, 2 and 4 are sent
    page.get_by_role("link", name=words["add"]).click()
    page.get_by_role("link", name=words["add"]).click()
    rows = page.locator("[data-member-rows] [data-member]")
    expect(rows).to_have_count(4)
    rows.nth(2).locator("[data-remove-member]").click()
    expect(rows).to_have_count(3)
    expect(page.locator("[data-member-number]")).to_have_text(["1", "2", "3"])
    _fill_member(page, 1, MEMBERS[0], photo)
    _fill_member(page, 2, MEMBERS[1], photo)
    _fill_member(page, 4, MEMBERS[2], photo)
    page.set_input_files("#board_resolution", str(pdf))
    page.set_input_files("#ownership_structure", str(structure))
    page.check("#declaration")
    _shoot(page, "kyc-institutional-form", language)
    page.get_by_role("button", name=words["submit"]).click()
    expect(page.locator("li[data-status=pending]")).to_contain_text(words["waiting"])
    expect(page.locator("li[data-status=pending]")).to_contain_text(words["institutional"])
    _shoot(page, "kyc-institutional-pending", language)
    with db.make_session_factory(pg_db)() as session:
        names = session.scalars(select(Member.legal_name).order_by(Member.position)).all()
    assert names == ["Chan Tai Man", "Lee Siu Ming", "Wong Mei Ling"]

    reviewer = make_operator(pg_db, "kyc_reviewer")
    desk = open_page(language)
    browser_sign_in(desk, live_url, reviewer)
    desk.goto(f"{live_url}/console/kyc")
    expect(desk.locator("tr[data-status=pending]")).to_have_count(1)
    desk.locator("tr[data-status=pending] a").click()
    expect(desk.locator("[data-fact=organisation_name]")).to_have_text(ORGANISATION["name"])
    expect(desk.locator("[data-fact=registered_address]")).to_contain_text("Harbour Tower")
    expect(desk.locator("tr[data-member]")).to_have_count(3)
    expect(desk.locator("tr[data-role=beneficial_owner]")).to_contain_text("60 %")
    images = desk.locator(".kyc-document img")
    expect(images).to_have_count(4)
    desk.wait_for_function(
        "() => [...document.querySelectorAll('.kyc-document img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    assert images.evaluate_all("all => all.map(img => img.naturalWidth)") == [240] * 4
    expect(desk.locator("[data-kind=board_resolution] a[download]")).to_have_count(1)
    screenshot_console(desk, "kyc-institutional", language)
    desk.get_by_role("button", name=words["approve"], exact=True).click()
    expect(desk.locator("[data-fact=status]")).to_contain_text(words["approved"])

    page.goto(f"{live_url}/app/kyc")
    expect(page.locator("[data-tier]")).to_have_attribute("data-tier", "institutional")
    assert console.errors == []


def test_a_refusal_in_the_browser_keeps_the_form(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    """The server's refusal (the browser's own checks bypassed) replaces the form, what was
    typed kept, and app.js still adds rows afterwards."""
    user = web_user(pg_db, "Unticked")
    page = open_page("zh_Hant")
    _sign_in(page, live_url, "zh_Hant", user, user.password)
    page.goto(f"{live_url}/app/kyc/institutional")
    page.fill("#name", ORGANISATION["name"])
    page.eval_on_selector("form[data-members-max]", "form => form.noValidate = true")
    page.get_by_role("button", name=TEXT["zh_Hant"]["submit"]).click()
    expect(page.locator("p.alert")).to_contain_text("請")
    expect(page.locator("#name")).to_have_value(ORGANISATION["name"])
    page.get_by_role("link", name=TEXT["zh_Hant"]["add"]).click()
    expect(page.locator("[data-member-rows] [data-member]")).to_have_count(3)
    assert [m for m in console.errors if "422" not in m] == []
