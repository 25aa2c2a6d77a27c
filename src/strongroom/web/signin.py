"""The two-step sign-in and the sign-out that the Lite app and the console share.

A ``SignInFlow`` is one part's sign-in: its paths, whether only operators may sign in, its
refusal sentences and the two forms it renders. The steps call the identity service
(``login_password_step``, ``login_code_step``), so every rule of signing in (lockouts, 2FA
blocks and alerts, audit events, the sign-in email) stays there. A step that shows a refusal in
its form settles it first (``db.settle_refusal``): everything but what the service kept
(failure counts, locks, alerts, audit events) is rolled back, and the request's unit of work
commits the kept records. Where a request comes from is the API's ``origin_of``. The route
handlers stay in ``lite/account.py`` and ``console/account.py`` (their page GETs differ) and
call the flow's steps.

**Between the two steps** (an account with 2FA on) the password is held nowhere: the password
step verifies it and the identity service keeps a pending sign-in on the server
(``identity.pending_sign_in``: single use, 3 minutes by default, the nonce stored hashed). The
``sr_pending`` cookie carries only that nonce, signed (HMAC under a key derived from the secret
key) together with the part's sign-in path and this browser's CSRF seed, so the cookie is
worthless to the other part and to another browser; it is ``SameSite=Strict``, sent only to
the part's sign-in path, and dropped once used. The code step completes the pending sign-in
with the code; a replay after that, after expiry or from another browser goes back to the
password form and writes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import origin_of, throttle
from strongroom.db import utcnow
from strongroom.errors import DomainError
from strongroom.identity import pending_sign_in
from strongroom.identity import service as identity
from strongroom.identity.schemas import LoginIn
from strongroom.settings import Settings
from strongroom.web import cookies, core, sessions
from strongroom.web.i18n import Lang, lang_of

CODE_STEP_REFUSALS: Final = frozenset(
    {"invalid_otp", "otp_required", "two_factor_blocked", "rate_limited"}
)
"""Refusals of the code step that keep the code form (others go back to the password form)."""

PasswordForm = Callable[[Request, str, str | None, int], HTMLResponse]
"""Renders the password form: request, email, refusal sentence (or None), status."""
CodeForm = Callable[[Request, str | None, int], HTMLResponse]
"""Renders the code form: request, refusal sentence (or None), status."""
PENDING_PURPOSE: Final = "pending-sign-in-nonce"
PENDING_MAX_CHARS: Final = 200


def _pending_mac(request: Request, path: str, nonce: str) -> str:
    """The pending cookie's signature: the nonce bound to the part's sign-in path and to this
    browser's CSRF seed (another browser has another seed)."""
    seed = cookies.get(request, cookies.CSRF_COOKIE, "")
    message = f"{path}|{seed}|{nonce}".encode()
    digest = hmac.new(cookies.derived_key(request, PENDING_PURPOSE), message, hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def hold_pending(
    response: Response, request: Request, waiting: identity.CodeAwaited, *, path: str
) -> None:
    """Give the browser the pending sign-in's nonce, signed, until it expires."""
    value = f"{waiting.nonce}.{_pending_mac(request, path, waiting.nonce)}"
    max_age_s = max(1, int((waiting.expires_at - utcnow()).total_seconds()))
    cookies.put(
        response,
        request,
        cookies.PENDING_COOKIE,
        value,
        max_age_s=max_age_s,
        path=path,
        same_site="strict",
    )


def pending_nonce(request: Request, *, path: str) -> str | None:
    """The nonce of this browser's pending sign-in at ``path``; None when the cookie is
    missing, too long, or not signed for this path and this browser."""
    value = cookies.get(request, cookies.PENDING_COOKIE, "", path=path) or ""
    nonce, _, mac = value.partition(".")
    if not nonce or len(value) > PENDING_MAX_CHARS:
        return None
    if not hmac.compare_digest(mac, _pending_mac(request, path, nonce)):
        return None
    return nonce


def retry_after(response: HTMLResponse, error: DomainError) -> HTMLResponse:
    """A form's refusal with the error's headers (a 429's ``Retry-After``)."""
    response.headers.update(getattr(error, "headers", None) or {})
    return response


def refusal_text(lang: Lang, error: DomainError, refusals: Mapping[str, str], unknown: str) -> str:
    """The translated sentence for a refusal of the identity service (``unknown`` for a code
    not in ``refusals``), with the lock's or block's end in the reader's time."""
    text = lang.gettext(refusals.get(error.code, unknown))
    details = error.details
    until = details.get("locked_until") or details.get("blocked_until") or details.get("retry_at")
    if until is not None:
        text = text % {"until": lang.when(datetime.fromisoformat(str(until)))}
    return text


@dataclass(frozen=True, slots=True)
class SignInFlow:
    """One part's sign-in. ``home``: where a signed-in person goes unless ``?next=`` names a
    path under ``next_prefixes``; ``sign_in``: the password step's path (and the sealed
    step's cookie path); ``code_path``: the code step's path."""

    home: str
    sign_in: str
    code_path: str
    next_prefixes: tuple[str, ...]
    operators_only: bool
    refusal: Callable[[Lang, DomainError], str]
    password_form: PasswordForm
    code_form: CodeForm

    def after_sign_in(self, request: Request) -> str:
        """The page asked for with ``?next=`` when it is one of this part's, else home."""
        return core.local_path(request.query_params.get("next"), self.home, self.next_prefixes)

    def query(self, request: Request) -> str:
        """``?next=...`` to carry from the password step to the code step, when there is one."""
        wanted = self.after_sign_in(request)
        return "" if wanted == self.home else "?" + urlencode({"next": wanted})

    def signed_in_now(self, request: Request, issued: identity.IssuedToken) -> Response:
        """303 to where the person was going, with the new session's cookie."""
        response = RedirectResponse(self.after_sign_in(request), status_code=303)
        sessions.start(response, request, issued, pending_path=self.sign_in)
        return core.secure_headers(response)

    def password_step(
        self, body: LoginIn, request: Request, session: Session, settings: Settings
    ) -> Response:
        """The password step; with 2FA on, a pending sign-in waits for the code."""
        origin = origin_of(request)
        try:
            counted = throttle.login(request, session, body.email)  # before Argon2 (R-SEC-9)
            step = identity.login_password_step(
                session=session,
                email=body.email,
                password=body.password,
                settings=settings.auth,
                ip=origin.ip,
                user_agent=origin.user_agent,
                operators_only=self.operators_only,
            )
        except DomainError as refused:
            error = db.settle_refusal(session, refused)
            message = self.refusal(lang_of(request), error)
            return retry_after(
                self.password_form(request, body.email, message, error.status), error
            )
        if isinstance(step, identity.CodeAwaited):  # counted as the API's otp_required is
            target = self.code_path + self.query(request)
            response = core.secure_headers(RedirectResponse(target, status_code=303))
            hold_pending(response, request, step, path=self.sign_in)
            return response
        throttle.give_back(request, session, counted)  # the limits count wrong guesses
        return self.signed_in_now(request, step)

    def waiting(self, request: Request, session: Session) -> pending_sign_in.Waiting | None:
        """This browser's pending sign-in of this part, while it can be completed."""
        nonce = pending_nonce(request, path=self.sign_in)
        if nonce is None:
            return None
        return pending_sign_in.find(
            session=session, nonce=nonce, operators_only=self.operators_only, now=utcnow()
        )

    def start_over(self, request: Request) -> Response:
        """303 to the password step, the pending cookie dropped (nothing was written)."""
        response = RedirectResponse(self.sign_in, status_code=303)
        cookies.drop(response, request, cookies.PENDING_COOKIE, path=self.sign_in)
        return core.secure_headers(response)

    def code_page(self, request: Request, session: Session) -> Response:
        """The code form while the pending sign-in can be completed, else the password."""
        if self.waiting(request, session) is None:
            return self.start_over(request)
        return self.code_form(request, None, 200)

    def code_step(
        self, otp: str, request: Request, session: Session, settings: Settings
    ) -> Response:
        """The 2FA step: the code completes the pending sign-in (once)."""
        waiting = self.waiting(request, session)
        nonce = pending_nonce(request, path=self.sign_in)
        if waiting is None or nonce is None:  # replayed, expired, or another browser's
            return self.start_over(request)
        origin = origin_of(request)
        try:
            counted = throttle.two_factor(request, session, waiting.email)  # R-SEC-9
            issued = identity.login_code_step(
                session=session,
                nonce=nonce,
                otp=otp,
                settings=settings.auth,
                ip=origin.ip,
                user_agent=origin.user_agent,
                operators_only=self.operators_only,
            )
        except DomainError as refused:
            error = db.settle_refusal(session, refused)
            if error.code == pending_sign_in.SignInExpired.code:  # used meanwhile
                return self.start_over(request)
            message = self.refusal(lang_of(request), error)
            if error.code in CODE_STEP_REFUSALS:
                return retry_after(self.code_form(request, message, error.status), error)
            response = self.password_form(request, waiting.email, message, error.status)
            cookies.drop(response, request, cookies.PENDING_COOKIE, path=self.sign_in)
            return response
        throttle.give_back(request, session, counted)
        return self.signed_in_now(request, issued)

    def sign_out(self, request: Request, session: Session) -> Response:
        """Revoke this browser's session on the server, then forget it here."""
        user = sessions.optional_user(request, session)
        if user is not None:
            identity.revoke_session(
                session=session,
                user=user.user,
                session_id=user.session.id,
                origin=origin_of(request),
            )
        return self.signed_out(request)

    def signed_out(self, request: Request) -> Response:
        """303 to the sign-in page, the session cookie dropped."""
        response = RedirectResponse(self.sign_in, status_code=303)
        sessions.end(response, request)
        return core.secure_headers(response)
