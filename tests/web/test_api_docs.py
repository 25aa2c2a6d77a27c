"""``/docs`` (issue #10, finding 6): Swagger UI from the package, under a CSP that allows only
this origin; no request leaves the origin, in a real Chromium; ReDoc and the OAuth2 redirect
page (FastAPI's CDN and inline-script pages) are gone."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx

from strongroom.web.api_docs import DOCS_POLICY

from .conftest import Console

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request


def test_docs_reference_only_this_origin_and_their_files_are_served(sqlite_url: str) -> None:
    with httpx.Client(base_url=sqlite_url) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == DOCS_POLICY
        assert "'unsafe-inline'" not in DOCS_POLICY and "http" not in DOCS_POLICY
        html = page.text
        assert not re.search(r"(?:src|href)=\"(?!/)", html)  # nothing but our own paths
        assert "cdn" not in html.lower() and "<script>" not in html
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        kinds = {}
        for url in assets:
            answer = client.get(url)
            assert answer.status_code == 200, url
            kinds[url.split("?")[0]] = answer.headers["content-type"].split(";")[0]
        assert kinds["/static/web/swagger-ui/swagger-ui-bundle.js"] == "text/javascript"
        assert kinds["/static/web/swagger-ui/swagger-ui.css"] == "text/css"
        assert client.get("/static/web/swagger-ui/LICENSE").status_code == 200
        for gone in ("/redoc", "/docs/oauth2-redirect"):
            assert client.get(gone).status_code == 404, gone


def test_docs_render_in_a_browser_without_leaving_the_origin(
    page: Page, sqlite_url: str, console: Console
) -> None:
    requested: list[str] = []

    def remember(request: Request) -> None:
        requested.append(request.url)

    page.on("request", remember)
    response = page.goto(f"{sqlite_url}/docs")
    assert response is not None and response.status == 200
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Strongroom" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/auth/login"]')
    assert requested and all(url.startswith(sqlite_url) for url in requested), requested
    assert console.errors == []  # no CSP violation, no script error
