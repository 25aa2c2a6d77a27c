"""The core every server-rendered page uses: one Jinja2 environment, ``render()``,
``static_url()`` and the security headers (issue #5, parts 1 and 4).

- **Templates** come from the packages in ``TEMPLATE_PACKAGES`` (under a folder per part:
  ``web/``, ``lite/``, ``console/``, ``reserves/``), autoescaped, with ``StrictUndefined``
  (a missing variable is an error, not an empty string) and the i18n extension: ``_()`` and
  ``{% trans %}`` translate into the request's language.
- **Static files** of the packages in ``STATIC_PACKAGES`` are served by one ``/static`` mount
  (app.py); ``static_url()`` adds a content hash (``?v=...``), so a changed file gets a new URL
  and no browser or service worker keeps an old one.
- **Headers**: every page is sent with a strict Content-Security-Policy (scripts, styles,
  images and connections only from this origin; no inline script or style, no ``eval``, no
  framing), ``X-Frame-Options: DENY``, ``nosniff`` and ``Referrer-Policy: no-referrer``;
  pages of signed-in users add ``Cache-Control: no-store``.
- **Navigation**: ``mounted()`` keeps the entries of a layout's menu whose page the app serves.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from babel import Locale
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import (
    ChoiceLoader,
    Environment,
    PackageLoader,
    StrictUndefined,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.routing import Match

from strongroom.errors import invariant, present
from strongroom.web import csrf, i18n

STATIC_URL: Final = "/static"
STATIC_PACKAGES: Final[list[str | tuple[str, str]]] = [("strongroom.web", "static")]
"""Mounted by app.py at ``STATIC_URL``; each part keeps its files under ``static/<part>/``
(``web/``: Lite, console and what they share; ``reserves/``: the proof-of-reserves pages)."""
TEMPLATE_PACKAGES: Final = ("strongroom.web",)
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NO_STORE: Final = "no-store"
HTMX_CONFIG: Final = {
    # under the CSP: htmx must not add a <style> for its indicators nor evaluate code
    "includeIndicatorStyles": False,
    "allowEval": False,
    "allowScriptTags": False,
    "selfRequestsOnly": True,
    "historyCacheSize": 0,  # no copy of signed-in pages in localStorage
}


def _package_directory(package: str, folder: str) -> Path:
    spec = present(importlib.util.find_spec(package), f"no {package}")
    locations = present(spec.submodule_search_locations, f"{package} is not a package")
    invariant(bool(locations), f"{package} is not a package")
    return Path(next(iter(locations))) / folder


@lru_cache(maxsize=1)
def static_directories() -> tuple[Path, ...]:
    # a bare package name means its "statics" folder, as Starlette's StaticFiles reads it
    return tuple(
        _package_directory(*((entry, "statics") if isinstance(entry, str) else entry)).resolve()
        for entry in STATIC_PACKAGES
    )


@lru_cache(maxsize=256)
def static_url(name: str) -> str:
    """``/static/<name>?v=<content hash>`` for a file of one of ``STATIC_PACKAGES``."""
    for directory in static_directories():
        path = (directory / name).resolve()
        invariant(path.is_relative_to(directory), f"{name!r} is outside static/")
        if path.is_file():
            version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            return f"{STATIC_URL}/{name}?v={version}"
    invariant(False, f"no static file {name!r}")
    raise AssertionError  # unreachable: invariant raised


@pass_context
def _gettext(context: Context, message: str) -> str:
    lang: i18n.Lang = context["lang"]
    return lang.gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, count: int) -> str:
    lang: i18n.Lang = context["lang"]
    return lang.ngettext(singular, plural, count)


@pass_context
def _csrf_field(context: Context) -> Markup:
    """``{{ csrf_field() }}``: the hidden token field every form must contain."""
    return csrf.hidden_field(context["csrf_token"])


def _environment() -> Environment:
    environment = Environment(
        loader=ChoiceLoader([PackageLoader(package, "templates") for package in TEMPLATE_PACKAGES]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    environment.policies["ext.i18n.trimmed"] = True
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_gettext, ngettext=_ngettext, newstyle=True
    )
    environment.globals["static_url"] = static_url
    environment.globals["csrf_field"] = _csrf_field
    environment.globals["htmx_config"] = HTMX_CONFIG
    environment.globals["languages"] = [
        (code, Locale.parse(code).get_display_name()) for code in i18n.LANGUAGES
    ]
    for code in i18n.LANGUAGES:  # read the catalogs now: a broken .po fails at startup
        i18n.lang_for(code)
    return environment


environment: Final = _environment()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    cache_control: str | None = NO_STORE,
    with_csrf: bool = True,
) -> HTMLResponse:
    """Render ``template`` with the request's language and CSRF token into a page sent with
    the security headers. Every template gets ``request``, ``lang`` (``_()``, amounts, dates),
    ``csrf_token`` (and ``csrf_field()``), ``static_url()`` and ``htmx_config``. A page without
    forms (``with_csrf=False``) sets no cookie, so it stays cacheable."""
    lang = i18n.lang_of(request)
    values = {
        "request": request,
        "lang": lang,
        "csrf_token": csrf.token_for(request) if with_csrf else "",
        **(context or {}),
    }
    body = environment.get_template(template).render(values)
    response = HTMLResponse(body, status_code=status_code, headers=page_headers(cache_control))
    csrf.attach(request, response)
    return response


def page_headers(cache_control: str | None = NO_STORE) -> dict[str, str]:
    headers = dict(PAGE_HEADERS)
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    return headers


def secure_headers(response: Response, cache_control: str | None = NO_STORE) -> Response:
    """Add the page headers to a response not made by ``render`` (redirects, files)."""
    response.headers.update(page_headers(cache_control))
    return response


LOCAL_PATH_MAX_CHARS: Final = 500


def local_path(candidate: str | None, default: str, prefixes: tuple[str, ...]) -> str:
    """``candidate`` if it is a path of this site under one of ``prefixes`` (for a redirect
    after sign-in or a language switch), else ``default``: never another host (``//evil``,
    ``/\\evil``, ``https://...``), never a control character."""
    if not candidate or len(candidate) > LOCAL_PATH_MAX_CHARS:
        return default
    if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
        return default
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in candidate):
        return default
    path = candidate.split("?", 1)[0].split("#", 1)[0]
    if not any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in prefixes):
        return default
    return candidate


class _Linked(Protocol):
    @property
    def path(self) -> str: ...


LinkedT = TypeVar("LinkedT", bound=_Linked)


def _served(app: Starlette, path: str) -> bool:
    """Whether ``app`` has a route for ``GET path`` (asked the way the router itself matches)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def mounted(request: Request, items: Sequence[LinkedT], key: str) -> list[LinkedT]:
    """The navigation ``items`` whose page is mounted on this app, worked out once and kept in
    ``app.state.<key>`` (a test app may mount only some screens)."""
    found: list[LinkedT] | None = getattr(request.app.state, key, None)
    if found is None:
        found = [item for item in items if _served(request.app, item.path)]
        setattr(request.app.state, key, found)
    return found
