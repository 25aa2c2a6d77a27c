"""Forgotten password (R-SEC-4): ask for a reset link, and the page the emailed link opens.

- ``/app/forgot-password``: an email address; the answer is the same page whether or not an
  account has it (``identity.reset.request_reset`` does the same work either way).
- ``/app/reset-password#token=...``: the emailed link. The token is in the URL's fragment, which
  the browser never sends, so it is in no access log and no Referer header; ``app.js`` puts it
  into the form's token field (without JavaScript the user pastes the token the email also
  shows). The form posts it with the new password twice and, for an account with two-step
  verification, a code from the app; then the user signs in with the new password. Every
  session of the account is signed out by the reset.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, throttle
from strongroom.errors import DomainError
from strongroom.identity import reset
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.account import refusal_text
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.lite.security import PASSWORD_REFUSALS, password_refusal

router = APIRouter(prefix=PREFIX)
FORGOT_PATH: Final = "/app/forgot-password"
RESET_PATH: Final = reset.RESET_PATH
EmailField = Annotated[str, Form(max_length=254)]
PasswordField = Annotated[str, Form(max_length=1024)]
TokenField = Annotated[str, Form(max_length=reset.TOKEN_MAX_CHARS)]
OtpField = Annotated[str, Form(max_length=32)]
REFUSALS: Final = {
    "invalid_reset_token": N_(
        "This reset link does not work: it may be used or expired. Ask for a new one."
    ),
}


def _refusal(lang: Lang, error: DomainError) -> str:
    if error.code in REFUSALS:
        return lang.gettext(REFUSALS[error.code])
    if error.code == "weak_password":
        return password_refusal(lang, error)
    return refusal_text(lang, error)


@router.get("/forgot-password", response_class=HTMLResponse)
def forgot_page(request: Request) -> HTMLResponse:
    return page(request, "lite/forgot_password.html", {"error": None, "email": ""}, user=None)


@router.post("/forgot-password", response_class=HTMLResponse)
def forgot(
    email: EmailField, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Email a reset link if an account has this address; the same answer either way."""
    try:
        throttle.password_reset(request, session, email)  # R-SEC-9
        reset.request_reset(
            session=session,
            email=email,
            settings=settings.auth,
            public_url=settings.mail.public_url,
            origin=forms.origin(request),
        )
    except DomainError as refused:  # only the request limiter refuses here
        error = db.settle_refusal(session, refused)
        context = {"error": refusal_text(lang_of(request), error), "email": email}
        return page(
            request, "lite/forgot_password.html", context, user=None, status_code=error.status
        )
    minutes = settings.auth.reset_token_ttl_s // 60
    return page(request, "lite/forgot_password_sent.html", {"minutes": minutes}, user=None)


def _reset_form(
    request: Request, error: str | None = None, token: str = "", status_code: int = 200
) -> HTMLResponse:
    return page(
        request,
        "lite/reset_password.html",
        {"error": error, "token": token},
        user=None,
        status_code=status_code,
    )


@router.get("/reset-password", response_class=HTMLResponse)
def reset_page(request: Request) -> HTMLResponse:
    """The page the emailed link opens; its script takes the token from the fragment."""
    return _reset_form(request)


@router.post("/reset-password", response_class=HTMLResponse)
def reset_password(
    token: TokenField,
    new_password: PasswordField,
    repeat_password: PasswordField,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    otp: OtpField = "",
) -> HTMLResponse:
    """Set the new password with the token (and the code when 2FA is on); then sign in."""
    lang = lang_of(request)
    if new_password != repeat_password:
        return _reset_form(request, lang.gettext(PASSWORD_REFUSALS["mismatch"]), token, 422)
    try:
        throttle.password_reset(request, session, None)  # before Argon2 (R-SEC-9)
        reset.confirm_reset(
            session=session,
            token=token.strip(),
            new_password=new_password,
            otp=otp or None,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)  # a wrong 2FA code still counts
        return _reset_form(request, _refusal(lang, error), token, error.status)
    return page(request, "lite/reset_password_done.html", {}, user=None)
