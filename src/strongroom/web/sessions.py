"""Signed-in browsers: the identity session behind the ``sr_session`` cookie (issue #5).

Signing in through the web goes through ``identity.service.login`` like the API, so the
browser's session is an ordinary identity session: it is listed with the user's other
sessions, revoking it there signs the browser out (the next request finds it revoked), and
signing out revokes it on the server. The cookie holds the session's bearer token and lives as
long as the session (``auth.token_ttl_s``). The operator console's sessions are the same kind
of session, of an operator (``web/console``).

Between the password and the 2FA code, a single-use pending sign-in waits on the server and
the ``sr_pending`` cookie holds only its signed nonce (``web.signin``); ``start`` drops that
cookie once the session is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request, Response

from strongroom.api import SessionDep
from strongroom.db import utcnow
from strongroom.errors import Unauthorized
from strongroom.identity import service as identity
from strongroom.identity.models import AuthToken, User
from strongroom.web import cookies

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
    token = cookies.get(request, cookies.SESSION_COOKIE)
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
    pending_path: str,
) -> None:
    """Give the browser the session ``identity.service.login`` just issued."""
    max_age_s = max(1, int((issued.expires_at - utcnow()).total_seconds()))
    cookies.put(response, request, cookies.SESSION_COOKIE, issued.token, max_age_s=max_age_s)
    cookies.drop(response, request, cookies.PENDING_COOKIE, path=pending_path)


def end(response: Response, request: Request) -> None:
    """Forget the session in the browser (the caller revokes it on the server)."""
    cookies.drop(response, request, cookies.SESSION_COOKIE)
