"""Signing in to the console (password, then the mandatory 2FA code) and signing out.

Both steps call ``identity.service.login`` with ``operators_only=True``, so every rule of
signing in (lockouts, 2FA blocks and alerts, audit events, the sign-in email) stays in the
identity service, and a user without an operator role is refused exactly as a wrong password
is: the same message, status, counting and lockout, so the form never tells who is an operator.
An operator whose password is right but who has not turned 2FA on is told to turn it on first
(in the Lite app's security settings), and no session is issued.

The steps are the Lite app's (``web.signin.SignInFlow``): a right password waits for the code
as a single-use pending sign-in on the server, its signed nonce in ``sr_pending`` (here bound to
``/console/signin``), and each step commits what a refusal recorded before showing it.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strongroom.api import SessionDep, SettingsDep
from strongroom.errors import DomainError, Unauthorized
from strongroom.identity import two_factor
from strongroom.identity.schemas import LoginIn
from strongroom.web import core, sessions, signin
from strongroom.web.console.layout import HOME, PREFIX, SIGN_IN, page
from strongroom.web.i18n import N_, Lang
from strongroom.web.signin import SignInFlow

router = APIRouter(prefix=PREFIX)
CODE_PATH: Final = "/console/signin/code"
OtpField = Annotated[str, Form(max_length=32)]
REFUSALS: Final = {
    "invalid_credentials": N_("The email or password is wrong."),
    "account_locked": N_(
        "Too many wrong attempts: signing in with this email is locked until %(until)s."
    ),
    "invalid_otp": N_("That code is not right. Enter the current code from your app."),
    "otp_required": N_("Enter the 6-digit code from your authenticator app."),
    "two_factor_blocked": N_("Too many wrong codes: try again after %(until)s."),
    "rate_limited": N_("Too many attempts: try again after %(until)s."),
    "two_factor_required": N_(
        "Operators must use two-step verification. Turn it on in the app's security "
        "settings first, then sign in here."
    ),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


def refusal_text(lang: Lang, error: DomainError) -> str:
    """The translated sentence for a refusal of the identity service."""
    return signin.refusal_text(lang, error, REFUSALS, UNKNOWN_REFUSAL)


def _form(request: Request, email: str, error: str | None, status_code: int = 200) -> HTMLResponse:
    return page(
        request,
        "console/signin.html",
        {"email": email, "error": error, "query": FLOW.query(request)},
        operator=None,
        status_code=status_code,
    )


def _code_form(request: Request, error: str | None, status_code: int = 200) -> HTMLResponse:
    return page(
        request,
        "console/signin_code.html",
        {"error": error, "query": FLOW.query(request)},
        operator=None,
        status_code=status_code,
    )


FLOW: Final = SignInFlow(
    home=HOME,
    sign_in=SIGN_IN,
    code_path=CODE_PATH,
    next_prefixes=(PREFIX,),
    operators_only=True,
    refusal=refusal_text,
    password_form=_form,
    code_form=_code_form,
)
"""Signing in to the console: operators only; after it, the console page asked for."""


@router.get("", include_in_schema=False)
def console_root() -> Response:
    return core.secure_headers(RedirectResponse(HOME, status_code=308))


@router.get("/signin", response_class=HTMLResponse)
def sign_in_page(request: Request, session: SessionDep) -> Response:
    """The form; an operator already signed in (with 2FA on) goes to the dashboard."""
    try:
        user = sessions.signed_in(request, session).user
    except Unauthorized:
        return _form(request, "", None)
    if user.operator_role is not None and two_factor.is_enabled(user):
        return core.secure_headers(RedirectResponse(FLOW.after_sign_in(request), status_code=303))
    return _form(request, "", None)


@router.post("/signin", response_class=HTMLResponse)
def sign_in(
    body: Annotated[LoginIn, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The password step: an operator's right password leads to the code step (a session
    straight away only if operators were ever allowed to sign in without 2FA)."""
    return FLOW.password_step(body, request, session, settings)


@router.get("/signin/code", response_class=HTMLResponse)
def code_page(request: Request, session: SessionDep) -> Response:
    return FLOW.code_page(request, session)


@router.post("/signin/code", response_class=HTMLResponse)
def sign_in_with_code(
    otp: OtpField, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The 2FA step: the code completes the pending sign-in, once."""
    return FLOW.code_step(otp, request, session, settings)


@router.post("/signout")
def sign_out(request: Request, session: SessionDep) -> Response:
    """Revoke this browser's session on the server, then forget it here."""
    return FLOW.sign_out(request, session)
