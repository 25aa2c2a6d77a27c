"""The KYC screens (issue #11 point 8 for points 1-3): the Lite app's ``/app/kyc`` (level
choice, the form with camera capture, upload progress, status, resubmission after a rejection)
and the console's review queue ``/console/kyc`` (age against the target, the document viewer
through the audited endpoint, approve, reject with a reason); over HTTP and in Chromium, in
both languages, with screenshots."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity.models import AuditEvent, User
from strongroom.settings import KycSettings
from tests.api.conftest import make_settings
from tests.api.kyc_support import EXECUTABLE, PRIMARY_FIELDS, noise_image, stored_files

from .conftest import (
    Console,
    assert_locked_down,
    csrf_token,
    fingerprint,
    new_client,
    web_sign_in,
    web_user,
)
from .console_support import browser_sign_in, console_sign_in, make_operator
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
TEXT = {
    "en": {
        "primary": "Primary",
        "submit": "Submit for review",
        "waiting": "Waiting for review",
        "rejected": "Rejected",
        "again": "Submit again",
        "unsupported": "Send a photo (JPEG or PNG) or a PDF.",
        "reject": "Reject",
        "approve": "Approve",
        "approved": "Approved",
    },
    "zh_Hant": {
        "primary": "初級",
        "submit": "提交審核",
        "waiting": "等候審核",
        "rejected": "已拒絕",
        "again": "重新提交",
        "unsupported": "請上載相片（JPEG 或 PNG）或 PDF。",
        "reject": "拒絕",
        "approve": "批准",
        "approved": "已批准",
    },
}


@pytest.fixture
def documents_dir(tmp_path: Path) -> Path:
    return tmp_path / "kyc-documents"


@pytest.fixture
def app(pg_db: Engine, documents_dir: Path) -> FastAPI:
    settings = make_settings(pg_db)
    settings = settings.model_copy(update={"kyc": KycSettings(documents_dir=str(documents_dir))})
    return create_app(settings, pg_db)


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    with new_client(live_url) as client:
        yield client


def _files(front: bytes | None = None) -> dict[str, tuple[str, bytes, str]]:
    return {
        "front": ("front.jpg", front if front is not None else noise_image("JPEG"), "image/jpeg"),
        "back": ("back.png", noise_image("PNG"), "image/png"),
    }


def _post_primary(client: httpx.Client, files: dict[str, tuple[str, bytes, str]]) -> httpx.Response:
    token = csrf_token(client.get("/app/kyc?level=primary").text)
    return client.post("/app/kyc", data={"csrf_token": token, **PRIMARY_FIELDS}, files=files)


def _user_id(engine: Engine, email: str) -> str:
    with db.make_session_factory(engine)() as session:
        return session.scalars(select(User.id).where(User.email == email)).one()


def test_lite_kyc_over_http(http: httpx.Client, pg_db: Engine, documents_dir: Path) -> None:
    assert http.get("/app/kyc").status_code == 303  # to the sign-in page
    user = web_user(pg_db, "Kyc")
    web_sign_in(http, user)
    page = http.get("/app/kyc")
    assert page.status_code == 200
    assert_locked_down(http, page)
    assert 'href="/app/kyc?level=primary#kyc-form"' in page.text
    form = http.get("/app/kyc?level=primary").text
    assert 'enctype="multipart/form-data"' in form and 'capture="environment"' in form
    assert "data-upload-progress" in form and 'name="selfie"' not in form
    assert 'capture="user"' in http.get("/app/kyc?level=advanced").text

    before, files_before = fingerprint(pg_db), stored_files(documents_dir)
    refused = _post_primary(http, _files(EXECUTABLE))
    assert refused.status_code == 415
    assert "Send a photo (JPEG or PNG) or a PDF." in refused.text
    assert 'value="Chan Tai Man"' in refused.text, "what was typed is kept"
    assert fingerprint(pg_db) == before and stored_files(documents_dir) == files_before

    done = _post_primary(http, _files())
    assert done.status_code == 303 and done.headers["location"] == "/app/kyc"
    shown = http.get("/app/kyc").text
    assert 'data-status="pending"' in shown and "Waiting for review" in shown
    assert 'href="/app/kyc?level=primary' not in shown, "one pending primary at a time"
    assert len(stored_files(documents_dir)) == 2

    no_token = http.post("/app/kyc", data=PRIMARY_FIELDS, files=_files())
    assert no_token.status_code == 403


def test_console_review_over_http(live_url: str, pg_db: Engine, documents_dir: Path) -> None:
    user = web_user(pg_db, "Reviewed")
    with new_client(live_url) as browser:
        web_sign_in(browser, user)
        assert _post_primary(browser, _files()).status_code == 303
    reviewer = make_operator(pg_db, "kyc_reviewer")
    with new_client(live_url) as console:
        console_sign_in(console, reviewer)
        queue = console.get("/console/kyc")
        assert queue.status_code == 200
        assert_locked_down(console, queue)
        found = re.search(r'href="/console/kyc/(\d+)"', queue.text)
        assert found is not None and "Waiting for review" in queue.text
        submission = found.group(1)
        one = console.get(f"/console/kyc/{submission}")
        assert one.status_code == 200 and "Chan Tai Man" in one.text
        images = re.findall(r'<img src="(/console/kyc/documents/\d+)"', one.text)
        assert len(images) == 2
        image = console.get(images[0])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert image.headers["cache-control"] == "no-store"
        token = csrf_token(one.text)
        empty = console.post(
            f"/console/kyc/{submission}/reject", data={"csrf_token": token, "reason": " "}
        )
        assert empty.status_code == 422
        rejected = console.post(
            f"/console/kyc/{submission}/reject",
            data={"csrf_token": token, "reason": "The back is blurred."},
        )
        assert rejected.status_code == 303
        again = console.post(f"/console/kyc/{submission}/approve", data={"csrf_token": token})
        assert again.status_code == 409 and "reviewed already" in again.text
    with db.make_session_factory(pg_db)() as session:
        views = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "kyc.document_viewed")
        ).all()
    assert len(views) == 1 and views[0].subject_user_id == _user_id(pg_db, user.email)

    support = make_operator(pg_db, "support")
    with new_client(live_url) as other:
        console_sign_in(other, support)
        assert other.get("/console/kyc").status_code == 403
        assert other.get(images[1]).status_code == 403
        assert 'href="/console/kyc"' not in other.get("/console/").text


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_kyc_journey_in_the_browser(
    language: str,
    open_page: OpenPage,
    live_url: str,
    pg_db: Engine,
    console: Console,
    tmp_path: Path,
) -> None:
    words = TEXT[language]
    user = web_user(pg_db, "Browser")
    front, back = tmp_path / "front.jpg", tmp_path / "back.png"
    front.write_bytes(noise_image("JPEG", size=320))
    back.write_bytes(noise_image("PNG", size=320))

    page = open_page(language)
    _sign_in(page, live_url, language, user, user.password)
    page.goto(f"{live_url}/app/kyc")
    _shoot(page, "kyc", language)
    page.locator("a[data-level=primary]").click()
    page.fill("#document_country", "HK")
    page.fill("#legal_name", "Chan Tai Man")
    page.fill("#document_number", "A123456(7)")
    page.fill("#date_of_birth", "1990-04-01")
    page.set_input_files("#front", str(front))
    page.set_input_files("#back", str(back))
    _shoot(page, "kyc-form", language)
    page.get_by_role("button", name=words["submit"]).click()
    expect(page.locator("li[data-status=pending]")).to_contain_text(words["waiting"])
    _shoot(page, "kyc-pending", language)

    reviewer = make_operator(pg_db, "kyc_reviewer")
    desk = open_page(language)
    browser_sign_in(desk, live_url, reviewer)
    desk.goto(f"{live_url}/console/kyc")
    expect(desk.locator("tr[data-status=pending]")).to_have_count(1)
    screenshot_console(desk, "kyc", language)
    desk.locator("tr[data-status=pending] a").click()
    images = desk.locator(".kyc-document img")
    expect(images).to_have_count(2)
    desk.wait_for_function(
        "() => [...document.querySelectorAll('.kyc-document img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    widths = images.evaluate_all("all => all.map(img => img.naturalWidth)")
    assert widths == [320, 320]
    screenshot_console(desk, "kyc-submission", language)
    desk.fill("#reason", "The back is blurred.")
    desk.get_by_role("button", name=words["reject"], exact=True).click()
    expect(desk.locator("[data-fact=status]")).to_contain_text(words["rejected"])

    page.goto(f"{live_url}/app/kyc")
    expect(page.locator("li[data-status=rejected]")).to_contain_text("The back is blurred.")
    page.get_by_role("link", name=words["again"]).click()
    page.fill("#document_country", "HK")
    page.fill("#legal_name", "Chan Tai Man")
    page.fill("#document_number", "A123456(7)")
    page.fill("#date_of_birth", "1990-04-01")
    page.set_input_files("#front", str(front))
    page.set_input_files("#back", str(back))
    page.get_by_role("button", name=words["submit"]).click()
    expect(page.locator("li[data-status=pending]")).to_have_count(1)
    _shoot(page, "kyc-resubmitted", language)

    desk.goto(f"{live_url}/console/kyc")
    desk.locator("tr[data-status=pending] a").click()
    desk.get_by_role("button", name=words["approve"], exact=True).click()
    expect(desk.locator("[data-fact=status]")).to_contain_text(words["approved"])
    page.goto(f"{live_url}/app/kyc")
    expect(page.locator("[data-tier]")).to_have_attribute("data-tier", "primary")
    assert console.errors == []


def test_a_refused_upload_in_the_browser_shows_why(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console, tmp_path: Path
) -> None:
    user = web_user(pg_db, "Refused")
    fake = tmp_path / "front.jpg"
    fake.write_bytes(EXECUTABLE)
    real = tmp_path / "back.png"
    real.write_bytes(noise_image("PNG"))
    page = open_page("en")
    _sign_in(page, live_url, "en", user, user.password)
    page.goto(f"{live_url}/app/kyc?level=primary")
    for field, value in PRIMARY_FIELDS.items():
        if field != "level" and field != "document_type":
            page.fill(f"#{field}", value)
    page.set_input_files("#front", str(fake))
    page.set_input_files("#back", str(real))
    page.get_by_role("button", name=TEXT["en"]["submit"]).click()
    expect(page.locator("p.alert")).to_contain_text(TEXT["en"]["unsupported"])
    expect(page.locator("#legal_name")).to_have_value("Chan Tai Man")
    assert [m for m in console.errors if "415" not in m] == []


def screenshot_console(page: Page, screen: str, language: str) -> None:
    from .conftest import screenshot, settle

    settle(page)
    screenshot(page, f"console-{screen}-{language}")


def test_advanced_after_an_approved_primary_asks_only_the_rest(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = web_user(pg_db, "Upgrader")
    web_sign_in(http, user)
    assert _post_primary(http, _files()).status_code == 303
    reviewer = make_operator(pg_db, "admin")
    with new_client(live_url) as desk:
        console_sign_in(desk, reviewer)
        queue = desk.get("/console/kyc").text
        found = re.search(r'href="/console/kyc/(\d+)"', queue)
        assert found is not None
        token = csrf_token(desk.get(f"/console/kyc/{found.group(1)}").text)
        approved = desk.post(f"/console/kyc/{found.group(1)}/approve", data={"csrf_token": token})
        assert approved.status_code == 303
    form = http.get("/app/kyc?level=advanced").text
    assert 'name="legal_name"' not in form and 'name="selfie"' in form
    assert "Chan Tai Man" in form, "the reused details are named"
    assert 'href="/app/kyc?level=primary' not in http.get("/app/kyc").text
    token = csrf_token(form)
    done = http.post(
        "/app/kyc",
        data={
            "csrf_token": token,
            "level": "advanced",
            "document_type": "id_card",
            "residence_country": "HK",
        },
        files={"selfie": ("me.jpg", noise_image("JPEG"), "image/jpeg")},
    )
    assert done.status_code == 303, done.text
    assert 'data-status="pending"' in http.get("/app/kyc").text
