"""The Lite app's top-up screen without the sandbox (production, R-SEC-11) and at its cap
(finding 1 of issue #10): the screen says top-up is unavailable instead of offering money from
nothing, a POST of the old form is refused and writes nothing; where the sandbox exists, an
amount over its per-request cap is refused in the form with the cap."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from tests.api.conftest import production_settings
from tests.web.conftest import csrf_token, fingerprint, web_sign_in, web_user

UNAVAILABLE = "Top-up is not available here: this installation has no top-up channel yet."


def _alert(html: str, role: str = "alert") -> str:
    found = re.search(rf'<p class="alert" role="{role}"[^>]*>(.*?)</p>', html, re.S)
    assert found is not None, f"no {role} on the page"
    return unescape(found.group(1))


@pytest.fixture
def production_browser(pg_db: Engine) -> Iterator[TestClient]:
    """A browser of a production installation over https (its cookies are Secure)."""
    app = create_app(production_settings(pg_db), pg_db)
    with TestClient(app, base_url="https://wallet.example", follow_redirects=False) as client:
        yield client


def test_production_offers_no_top_up_and_refuses_a_posted_one(
    production_browser: TestClient, pg_db: Engine
) -> None:
    web_sign_in(production_browser, web_user(pg_db))
    page = production_browser.get("/app/topup")
    assert page.status_code == 200
    assert _alert(page.text, "status") == UNAVAILABLE
    assert 'id="topup-form"' not in page.text and "sandbox" not in page.text
    before = fingerprint(pg_db)
    posted = production_browser.post(  # the form as a demo would have had it
        "/app/topup",
        data={
            "csrf_token": csrf_token(page.text),
            "idempotency_key": "k" * 32,
            "asset": "HKD",
            "amount": "1000000.00",
        },
    )
    assert posted.status_code == 422
    assert _alert(posted.text, "status") == UNAVAILABLE
    assert fingerprint(pg_db) == before


def test_production_says_so_in_chinese(production_browser: TestClient, pg_db: Engine) -> None:
    web_sign_in(production_browser, web_user(pg_db))
    production_browser.cookies.set("lang", "zh_Hant")
    page = production_browser.get("/app/topup")
    assert _alert(page.text, "status") == "此處無法增值：本系統尚未提供任何增值渠道。"


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("en", "The sandbox adds at most 50,000.00 HKD at a time."),
        ("zh_Hant", "沙盒渠道每次最多增值 50,000.00 HKD。"),
    ],
)
def test_a_top_up_over_the_sandbox_cap_is_refused_in_the_form(
    http: httpx.Client, pg_db: Engine, language: str, message: str
) -> None:
    web_sign_in(http, web_user(pg_db))
    http.cookies.set("lang", language)
    page = http.get("/app/topup").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key is not None
    before = fingerprint(pg_db)
    response = http.post(
        "/app/topup",
        data={
            "csrf_token": csrf_token(page),
            "idempotency_key": key.group(1),
            "asset": "HKD",
            "amount": "50000.01",
        },
    )
    assert response.status_code == 422
    assert _alert(response.text) == message
    assert 'value="50000.01"' in response.text  # what was typed is kept
    assert fingerprint(pg_db) == before
