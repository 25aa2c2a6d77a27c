"""CSRF protection for every form and HTMX request (issue #5, part 4).

A signed double-submit token bound to the session: the browser holds a random seed in the
``sr_csrf`` cookie (HttpOnly, set on the first page it is shown), and a page's token is
``HMAC(key, seed | SHA-256(session cookie))``. Another site can neither read the seed nor
compute the HMAC, so it cannot forge a token; and a token shown before sign-in stops working
after it (the session part changed), so a token seen by someone else is useless once a user
signs in.

Every unsafe request (anything but GET, HEAD, OPTIONS) to a router that has ``protect`` as a
dependency must carry the token: in the form field ``csrf_token`` (the ``csrf_field()`` a
template puts in each form) or the ``X-CSRF-Token`` header (HTMX sends it from the
``hx-headers`` of ``<body>``). A missing or wrong one is refused with 403 ``csrf_failed``
before the endpoint runs, so nothing is written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from fastapi import Request, Response
from markupsafe import Markup, escape

from strongroom.errors import Forbidden
from strongroom.web import cookies

FIELD: Final = "csrf_token"
HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
SEED_BYTES: Final = 32
SEED_MAX_CHARS: Final = 64
TOKEN_MAX_CHARS: Final = 128
FORM_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")


class CsrfRefused(Forbidden):
    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__("the form's security token is missing or wrong: reload the page")


def _seed(request: Request) -> str:
    """The browser's seed: from its cookie, or a new one (set on the response by ``attach``)."""
    seed = getattr(request.state, "csrf_seed", None)
    if isinstance(seed, str):
        return seed
    seed = cookies.get(request, cookies.CSRF_COOKIE, "") or ""
    if not 32 <= len(seed) <= SEED_MAX_CHARS:
        seed = secrets.token_urlsafe(SEED_BYTES)
        request.state.csrf_new_seed = True
    request.state.csrf_seed = seed
    return seed


def _token(request: Request, seed: str) -> str:
    session = cookies.get(request, cookies.SESSION_COOKIE, "") or ""
    bound = hashlib.sha256(session.encode()).hexdigest()
    mac = hmac.new(cookies.derived_key(request, "csrf"), f"{seed}|{bound}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def token_for(request: Request) -> str:
    """The token a page rendered for this request puts in its forms."""
    return _token(request, _seed(request))


def attach(request: Request, response: Response) -> None:
    """Send the seed cookie if this request made a new one."""
    if getattr(request.state, "csrf_new_seed", False):
        cookies.put(response, request, cookies.CSRF_COOKIE, _seed(request), max_age_s=None)


def hidden_field(token: str) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, escape(token))


async def protect(request: Request) -> None:
    """Router dependency: refuse an unsafe request without the right token (403)."""
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(HEADER)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if given is None and content_type in FORM_TYPES:
        value = (await request.form()).get(FIELD)
        given = value if isinstance(value, str) else None
    seed = cookies.get(request, cookies.CSRF_COOKIE, "") or ""
    if not given or len(given) > TOKEN_MAX_CHARS or not 32 <= len(seed) <= SEED_MAX_CHARS:
        raise CsrfRefused()
    if not hmac.compare_digest(given.encode(), _token(request, seed).encode()):
        raise CsrfRefused()
