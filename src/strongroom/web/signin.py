"""The two-step sign-in and the sign-out that the Lite app and the console share.

A ``SignInFlow`` is one part's sign-in: its paths, whether only operators may sign in, its
refusal sentences and the two forms it renders. Both steps call ``identity.service.login``, so
every rule of signing in (lockouts, 2FA blocks and alerts, audit events, the sign-in email)
stays in the identity service. A step that shows a refusal in its form settles it first
(``db.settle_refusal``): everything but what the service kept (failure counts, locks, alerts,
audit events) is rolled back, and the request's unit of work commits the kept records.
The password step of an account with 2FA on keeps the email and password sealed in
``sr_pending`` (``sessions.seal_pending``), bound to the part's sign-in path, until the code
step unseals it and signs in again with the code. Where a request comes from is the API's
``origin_of``. The route handlers stay in ``lite/account.py``
and ``console/account.py`` (their page GETs differ) and call the flow's steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import throttle
from strongroom.api.identity import origin_of
from strongroom.db import utcnow
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity.schemas import LoginIn
from strongroom.settings import Settings
from strongroom.web import core, sessions
from strongroom.web.i18n import Lang, lang_of

CODE_STEP_REFUSALS: Final = frozenset(
    {"invalid_otp", "otp_required", "two_factor_blocked", "rate_limited"}
)
"""Refusals of the code step that keep the code form (others go back to the password form)."""

PasswordForm = Callable[[Request, str, str | None, int], HTMLResponse]
"""Renders the password form: request, email, refusal sentence (or None), status."""
CodeForm = Callable[[Request, str | None, int], HTMLResponse]
"""Renders the code form: request, refusal sentence (or None), status."""


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

    def login(
        self, session: Session, settings: Settings, request: Request, body: LoginIn
    ) -> identity.IssuedToken:
        """``identity.service.login`` for this part (operators only in the console)."""
        origin = origin_of(request)
        return identity.login(
            session=session,
            email=body.email,
            password=body.password,
            otp=body.otp,
            settings=settings.auth,
            ip=origin.ip,
            user_agent=origin.user_agent,
            operators_only=self.operators_only,
        )

    def signed_in_now(self, request: Request, issued: identity.IssuedToken) -> Response:
        """303 to where the person was going, with the new session's cookie."""
        response = RedirectResponse(self.after_sign_in(request), status_code=303)
        sessions.start(response, request, issued, pending_path=self.sign_in)
        return core.secure_headers(response)

    def password_step(
        self, body: LoginIn, request: Request, session: Session, settings: Settings
    ) -> Response:
        """The password step; with 2FA on, the sealed first step waits for the code."""
        try:
            counted = throttle.login(request, session, body.email)  # before Argon2 (R-SEC-9)
            issued = self.login(session, settings, request, body.model_copy(update={"otp": None}))
        except DomainError as refused:
            error = db.settle_refusal(session, refused)
            if error.code != "otp_required":
                message = self.refusal(lang_of(request), error)
                form = self.password_form(request, body.email, message, error.status)
                return retry_after(form, error)
            target = self.code_path + self.query(request)
            response = core.secure_headers(RedirectResponse(target, status_code=303))
            sessions.seal_pending(
                response, request, body.email, body.password, now=utcnow(), path=self.sign_in
            )
            return response
        throttle.give_back(request, session, counted)  # the limits count wrong guesses
        return self.signed_in_now(request, issued)

    def code_page(self, request: Request) -> Response:
        """The code form while the sealed first step is valid, else back to the password."""
        if sessions.unseal_pending(request, now=utcnow(), path=self.sign_in) is None:
            return core.secure_headers(RedirectResponse(self.sign_in, status_code=303))
        return self.code_form(request, None, 200)

    def code_step(
        self, otp: str, request: Request, session: Session, settings: Settings
    ) -> Response:
        """The 2FA step: the same sign-in again, now with the code."""
        pending = sessions.unseal_pending(request, now=utcnow(), path=self.sign_in)
        if pending is None:
            return core.secure_headers(RedirectResponse(self.sign_in, status_code=303))
        body = LoginIn(email=pending.email, password=pending.password, otp=otp)
        try:
            counted = throttle.two_factor(request, session, pending.email)  # R-SEC-9
            issued = self.login(session, settings, request, body)
        except DomainError as refused:
            error = db.settle_refusal(session, refused)
            message = self.refusal(lang_of(request), error)
            if error.code in CODE_STEP_REFUSALS:
                return retry_after(self.code_form(request, message, error.status), error)
            response = self.password_form(request, pending.email, message, error.status)
            sessions.drop_pending(response, request, path=self.sign_in)
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
