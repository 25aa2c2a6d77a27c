"""The interactive API documentation at ``/docs``: Swagger UI served from the package, not a CDN
(issue #10, finding 6): no third-party code runs on the operator's origin, and an air-gapped back
office gets a working page. ``swagger-ui-dist`` is vendored unmodified from npm under
``static/web/swagger-ui/`` (its licence and notice beside it; ``README.md`` says how to update
it), started by ``static/web/swagger-init.js``. The page's own Content-Security-Policy allows
only this origin: scripts and styles from ``/static``, the document from ``/openapi.json``,
images from here or ``data:`` (Swagger UI's icons). ReDoc, which FastAPI would load from a CDN,
is off: one documentation page is enough.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from markupsafe import escape

from strongroom.web.core import static_url

DOCS_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
OPENAPI_URL: Final = "/openapi.json"

router = APIRouter(include_in_schema=False)


def page(title: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(title)} · API</title>
<link rel="stylesheet" href="{static_url("web/swagger-ui/swagger-ui.css")}">
<link rel="icon" type="image/png" href="{static_url("web/icons/icon-192.png")}">
<script src="{static_url("web/swagger-ui/swagger-ui-bundle.js")}" defer></script>
<script src="{static_url("web/swagger-init.js")}" defer></script>
</head>
<body>
<div id="swagger-ui" data-openapi="{OPENAPI_URL}"></div>
</body>
</html>
"""


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    return HTMLResponse(
        page("Strongroom"),
        headers={
            "Content-Security-Policy": DOCS_POLICY,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
