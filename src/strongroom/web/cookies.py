"""The web layer's cookies, all set here with the same flags (issue #5, part 4).

Every cookie is ``HttpOnly`` and ``SameSite=Lax`` (the pending sign-in: ``Strict``) and
``Secure``, except on plain ``http://`` to a loopback host (``localhost``, ``127.0.0.1``,
``::1``) when the settings' ``env`` is ``demo``, ``development`` or ``test``: ``strongroom
demo`` and a developer's ``strongroom serve`` run there without TLS, and a browser drops a
``Secure`` cookie sent over plain http. The browser tests run the app with ``env=test`` on
``http://127.0.0.1`` and so get the relaxed flag; production always gets ``Secure``.

Keys for what the web layer signs or seals are derived from ``STRONGROOM_SECRET_KEY`` with a
purpose label, so a CSRF token can never be replayed as anything else.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Literal

from fastapi import Request, Response

from strongroom.settings import Settings

SESSION_COOKIE: Final = "sr_session"
"""The identity session's bearer token (``identity.service.issue_token``)."""
CSRF_COOKIE: Final = "sr_csrf"
"""A random seed the CSRF tokens of this browser are derived from."""
PENDING_COOKIE: Final = "sr_pending"
"""The sealed first step of a sign-in waiting for its 2FA code."""
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
RELAXED_ENVS: Final = frozenset({"demo", "development", "test"})


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def secure(request: Request) -> bool:
    """Whether cookies get ``Secure``: always, except plain http to a loopback host in demo or
    development (see the module docstring)."""
    relaxed = (
        settings_of(request).env in RELAXED_ENVS
        and request.url.scheme == "http"
        and (request.url.hostname or "") in LOOPBACK_HOSTS
    )
    return not relaxed


def name_for(request: Request, base: str, path: str = "/") -> str:
    """The name a cookie has in this request: ``__Host-<base>`` where it is ``Secure`` with
    ``Path=/`` (no ``Domain``: bound to this host, so no other subdomain can set or shadow it),
    ``__Secure-<base>`` where it is ``Secure`` on a narrower path (``__Host-`` needs ``/``), and
    plain ``<base>`` where ``Secure`` is left off (plain http on loopback in demo, development
    and test: browsers refuse a prefixed cookie without ``Secure``)."""
    if not secure(request):
        return base
    return f"__Host-{base}" if path == "/" else f"__Secure-{base}"


def get(request: Request, base: str, default: str | None = None, *, path: str = "/") -> str | None:
    """The value of the cookie ``put`` sets as ``base`` (at ``path``), or ``default``."""
    return request.cookies.get(name_for(request, base, path), default)


def put(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    max_age_s: int | None,
    path: str = "/",
    same_site: Literal["lax", "strict"] = "lax",
) -> None:
    """Set a cookie with the web layer's flags and name (``name_for``; ``max_age_s`` None:
    until the browser closes)."""
    response.set_cookie(
        name_for(request, name, path),
        value,
        max_age=max_age_s,
        path=path,
        secure=secure(request),
        httponly=True,
        samesite=same_site,
    )


def drop(response: Response, request: Request, name: str, *, path: str = "/") -> None:
    """Delete a cookie set by ``put`` (same name, path and flags), if the browser sent it."""
    named = name_for(request, name, path)
    if named not in request.cookies:
        return
    response.delete_cookie(named, path=path, secure=secure(request), httponly=True, samesite="lax")


def derived_key(request: Request, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from the installation's secret key."""
    secret = settings_of(request).secret_key.encode()
    return hmac.new(secret, f"strongroom.web.{purpose}.v1".encode(), hashlib.sha256).digest()
