"""Signed-in browsers: the identity session behind the ``sr_session`` cookie (issue #5).

Signing in through the web goes through ``identity.service.login`` like the API, so the
browser's session is an ordinary identity session: it is listed with the user's other
sessions, revoking it there signs the browser out (the next request finds it revoked), and
signing out revokes it on the server. The cookie holds the session's bearer token and lives as
long as the session (``auth.token_ttl_s``). The operator console's sessions are the same kind
of session, of an operator (``web/console``).

Between the password and the 2FA code, the first step is kept in the ``sr_pending`` cookie,
sealed with AES-GCM under a key derived from the secret key: the email, the password and an
expiry (``PENDING_TTL_S``). The second step unseals it and calls ``identity.service.login``
again with the code, so every rule of signing in (lockouts, 2FA blocks and alerts, audit
events, the sign-in email) stays in the identity service and nowhere else. The cookie is
``SameSite=Strict``, only sent to the sign-in path of the part that set it (``/app/signin``,
``/console/signin``; the path is also bound into the seal, so one part's cookie is worthless to
the other), and dropped once used.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Depends, Request, Response

from strongroom.api import SessionDep
from strongroom.db import utcnow
from strongroom.errors import Unauthorized
from strongroom.identity import service as identity
from strongroom.identity.models import AuthToken, User
from strongroom.web import cookies

PENDING_TTL_S: Final = 5 * 60
PENDING_PATH: Final = "/app/signin"
PENDING_MAX_CHARS: Final = 2048
NONCE_BYTES: Final = 12
SIGN_IN_PATH: Final = "/app/signin"


class SignInRequired(Unauthorized):
    """No valid session: pages answer with a redirect to the sign-in page (see ``errors``)."""

    code = "sign_in_required"

    def __init__(self) -> None:
        super().__init__("sign in first")


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session: AuthToken


def signed_in(request: Request, session: SessionDep) -> SignedIn:
    """Dependency: the user and identity session of the ``sr_session`` cookie, or
    ``SignInRequired`` when it is missing, unknown, revoked or expired."""
    token = request.cookies.get(cookies.SESSION_COOKIE)
    try:
        user, auth = identity.authenticate_session(session=session, token=token)
    except Unauthorized as error:
        raise SignInRequired() from error
    return SignedIn(user=user, session=auth)


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


def optional_user(request: Request, session: SessionDep) -> SignedIn | None:
    """Dependency: the signed-in user, or None (for pages open to both)."""
    try:
        return signed_in(request, session)
    except SignInRequired:
        return None


def start(
    response: Response,
    request: Request,
    issued: identity.IssuedToken,
    *,
    pending_path: str = PENDING_PATH,
) -> None:
    """Give the browser the session ``identity.service.login`` just issued."""
    max_age_s = max(1, int((issued.expires_at - utcnow()).total_seconds()))
    cookies.put(response, request, cookies.SESSION_COOKIE, issued.token, max_age_s=max_age_s)
    cookies.drop(response, request, cookies.PENDING_COOKIE, path=pending_path)


def end(response: Response, request: Request) -> None:
    """Forget the session in the browser (the caller revokes it on the server)."""
    cookies.drop(response, request, cookies.SESSION_COOKIE)


# --------------------------------------------------------------------------- 2FA step


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    email: str
    password: str


def _aead(request: Request) -> AESGCM:
    return AESGCM(cookies.derived_key(request, "pending-sign-in"))


def seal_pending(
    response: Response,
    request: Request,
    email: str,
    password: str,
    *,
    now: datetime,
    path: str = PENDING_PATH,
) -> None:
    """Keep a sign-in whose password was right until its 2FA code comes (at ``path``)."""
    expires = now + timedelta(seconds=PENDING_TTL_S)
    plain = json.dumps({"email": email, "password": password, "expires": expires.isoformat()})
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = nonce + _aead(request).encrypt(nonce, plain.encode(), path.encode())
    value = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
    cookies.put(
        response,
        request,
        cookies.PENDING_COOKIE,
        value,
        max_age_s=PENDING_TTL_S,
        path=path,
        same_site="strict",
    )


def unseal_pending(
    request: Request, *, now: datetime, path: str = PENDING_PATH
) -> PendingSignIn | None:
    """The pending sign-in of this browser; None when missing, tampered with or expired."""
    value = request.cookies.get(cookies.PENDING_COOKIE, "")
    if not value or len(value) > PENDING_MAX_CHARS:
        return None
    try:
        sealed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        plain = _aead(request).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], path.encode())
        fields = json.loads(plain)
        expires = datetime.fromisoformat(fields["expires"])
        email, password = fields["email"], fields["password"]
    except (binascii.Error, InvalidTag, ValueError, KeyError, TypeError):
        return None
    if expires <= now or not isinstance(email, str) or not isinstance(password, str):
        return None
    return PendingSignIn(email=email, password=password)


def drop_pending(response: Response, request: Request, *, path: str = PENDING_PATH) -> None:
    cookies.drop(response, request, cookies.PENDING_COOKIE, path=path)
