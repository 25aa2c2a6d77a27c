"""Errors on web pages: an HTML page in the layout instead of the API's JSON (issue #5).

app.py's error handlers ask ``page_for`` first; it answers for paths under one of
``PARTS``' prefixes (the Lite app, the console) and returns None for everything
else, which keeps its JSON. A 401 (no session, or a revoked or expired one) becomes a redirect
to that part's sign-in page (HTMX requests get ``HX-Redirect``), every other status a page
that says what happened without any detail a client should not see.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from strongroom.web import cookies, core
from strongroom.web.i18n import N_


@dataclass(frozen=True, slots=True)
class Part:
    """A part of the web layer: where its visitors sign in, its start page, its layout;
    optionally what else its layout needs on an error page (``context``, e.g. the console's
    navigation; it may override ``home``) and its own title and message (msgids) for some
    error codes (``texts``)."""

    sign_in: str
    home: str
    layout: str
    context: Callable[[Request], Mapping[str, Any]] | None = None
    texts: Mapping[str, tuple[str, str]] = field(default_factory=dict)


PARTS: Final = {"/app": Part(sign_in="/app/signin", home="/app/", layout="lite/layout.html")}
"""The web prefixes (``web.console`` adds ``/console`` here when it is imported)."""
TITLES: Final = {
    400: N_("That did not work"),
    403: N_("You cannot open this page"),
    404: N_("Page not found"),
    405: N_("That did not work"),
    413: N_("That was too large"),
    422: N_("That did not work"),
    429: N_("Too many attempts"),
    500: N_("Something went wrong"),
}
MESSAGES: Final = {
    403: N_("You do not have access to this page, or it has expired."),
    404: N_("There is nothing at this address. Check the link, or go back home."),
    429: N_("Please wait a little and try again."),
    500: N_("Something went wrong on our side. Please try again later."),
}
CSRF_TITLE: Final = N_("This form has expired")
CSRF_MESSAGE: Final = N_(
    "It was open for too long or was not sent from this site. Go back, reload the page and "
    "try again."
)
DEFAULT_MESSAGE: Final = N_("The request could not be handled. Go back and try again.")


def prefix_of(request: Request) -> str | None:
    path = request.url.path
    for prefix in PARTS:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


def page_for(request: Request, status: int, code: str | None = None) -> Response | None:
    """The HTML answer for an error on a web page; None when ``request`` is not for one."""
    prefix = prefix_of(request)
    if prefix is None:
        return None
    part = PARTS[prefix]
    if status == 401:
        return _to_sign_in(request, part)
    title = TITLES.get(status, TITLES[400] if status < 500 else TITLES[500])
    message = MESSAGES.get(status, DEFAULT_MESSAGE)
    if code == "csrf_failed":
        title, message = CSRF_TITLE, CSRF_MESSAGE
    elif code is not None and code in part.texts:
        title, message = part.texts[code]
    values = {
        "status": status,
        "title": title,
        "message": message,
        "layout": part.layout,
        "home": part.home,
        **(part.context(request) if part.context is not None else {}),
    }
    return core.render(request, "web/error.html", values, status_code=status)


def _to_sign_in(request: Request, part: Part) -> Response:
    htmx = request.headers.get("hx-request") == "true"
    back = request.url.path if request.method == "GET" and not htmx else ""
    wanted = back and back not in (part.sign_in, part.home)
    target = f"{part.sign_in}?next={quote(back, safe='/')}" if wanted else part.sign_in
    response: Response
    if htmx:
        response = Response(status_code=204, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    cookies.drop(response, request, cookies.SESSION_COOKIE)
    return core.secure_headers(response)
