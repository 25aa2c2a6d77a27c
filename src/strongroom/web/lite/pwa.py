"""What makes the Lite app installable (issue #5, part 1): the web manifest, the service worker
and the offline page.

The service worker is served from ``/app/sw.js`` so that its scope is ``/app/``, with
``Cache-Control: no-cache`` so that browsers look for a new one on each visit. It precaches the
shell (``SHELL``: stylesheet, scripts, icons, the offline page) under a cache named after the
content hashes of those files, so a changed file makes a new worker and a new cache; it answers
navigations from the network and, when the network fails, with the cached offline page. It
never caches a signed-in page.
"""

from __future__ import annotations

import hashlib
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from strongroom.web import core
from strongroom.web.i18n import lang_of
from strongroom.web.lite.layout import HOME, PREFIX, page

router = APIRouter(prefix=PREFIX)
OFFLINE_PATH: Final = "/app/offline"
THEME_COLOUR: Final = "#0f5b4f"
BACKGROUND_COLOUR: Final = "#f6f7f5"
ICONS: Final = (
    ("web/icons/icon-192.png", "192x192", "any"),
    ("web/icons/icon-512.png", "512x512", "any"),
    ("web/icons/icon-maskable-512.png", "512x512", "maskable"),
)
SHELL_FILES: Final = (
    "web/base.css",
    "web/lite.css",
    "web/app.js",
    "web/htmx.min.js",
    "web/paycode.js",
    "web/qrcode-generator.js",
    *(name for name, _size, _purpose in ICONS),
)


def shell() -> list[str]:
    """The URLs the service worker precaches."""
    return [core.static_url(name) for name in SHELL_FILES] + [OFFLINE_PATH]


@router.get("/manifest.webmanifest")
def manifest(request: Request) -> Response:
    lang = lang_of(request)
    body = {
        "name": lang.gettext("Strongroom Wallet"),
        "short_name": lang.gettext("Strongroom"),
        "description": lang.gettext("Your stored-value wallet: balances, top-ups and transfers."),
        "lang": lang.html_lang,
        "id": HOME,
        "start_url": HOME,
        "scope": HOME,
        "display": "standalone",
        "orientation": "portrait",
        "theme_color": THEME_COLOUR,
        "background_color": BACKGROUND_COLOUR,
        "icons": [
            {"src": core.static_url(name), "sizes": sizes, "type": "image/png", "purpose": purpose}
            for name, sizes, purpose in ICONS
        ],
    }
    return JSONResponse(
        body,
        media_type="application/manifest+json",
        headers=core.page_headers("no-cache") | {"Vary": "Accept-Language, Cookie"},
    )


@router.get("/sw.js")
def service_worker(request: Request) -> Response:
    urls = shell()
    version = hashlib.sha256("\n".join(urls).encode()).hexdigest()[:12]
    body = core.environment.get_template("lite/sw.js").render(
        {"shell": urls, "offline": OFFLINE_PATH, "version": version, "scope": HOME}
    )
    return Response(
        body,
        media_type="text/javascript",
        headers=core.page_headers("no-cache"),
    )


@router.get("/offline", response_class=HTMLResponse)
def offline(request: Request) -> HTMLResponse:
    """What a navigation shows without a network (precached: nothing of any user in it)."""
    return page(
        request, "lite/offline.html", {"offline": True}, user=None, cache_control="no-cache"
    )
