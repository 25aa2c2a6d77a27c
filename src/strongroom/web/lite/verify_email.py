"""Confirming an email address (R-SEC-11): the page the emailed link opens, and a new link.

The link is ``/app/verify-email#token=...``: the token is in the fragment, which the browser
never sends, so no access log or Referer header holds it. ``app.js`` moves it into the page's
form and sends the form at once (a POST, the token in its body); without JavaScript the user
pastes the code the email also shows. Verifying needs no session: the token is the proof, and
it only confirms the address it was sent to (``identity.verification``). A signed-in user whose
address is not confirmed yet can ask for a new link (at most a few an hour; part D's request
limiter counts the route too).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, throttle
from strongroom.errors import DomainError
from strongroom.identity import verification
from strongroom.web import sessions
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import HOME, PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = verification.VERIFY_PATH
TokenField = Annotated[str, Form(max_length=verification.TOKEN_MAX_CHARS)]
OptionalUser = Annotated[SignedIn | None, Depends(sessions.optional_user)]
REFUSALS: Final = {
    "invalid_verification_token": N_(
        "This link does not work: it may have expired, or be for an older address. "
        "Sign in and ask for a new one."
    ),
    "email_already_verified": N_("Your email address is confirmed already."),
    "rate_limited": N_("We sent you several links in the last hour: use the newest one."),
}


def _form(
    request: Request, user: SignedIn | None, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return page(
        request,
        "lite/verify_email.html",
        {"error": error},
        user=user,
        status_code=status_code,
    )


@router.get("/verify-email", response_class=HTMLResponse)
def verify_page(request: Request, user: OptionalUser) -> HTMLResponse:
    """The page the link opens; its script posts the token from the fragment."""
    return _form(request, user)


@router.post("/verify-email", response_class=HTMLResponse)
def verify(
    token: TokenField, request: Request, session: SessionDep, user: OptionalUser
) -> HTMLResponse:
    lang = lang_of(request)
    try:
        verification.verify(session=session, token=token.strip(), origin=forms.origin(request))
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = lang.gettext(REFUSALS.get(error.code, forms.UNKNOWN_REFUSAL))
        return _form(request, user, message, error.status)
    return page(request, "lite/verify_email_done.html", {"home": HOME}, user=user)


@router.post("/verify-email/resend", response_class=HTMLResponse)
def resend(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """A new link to the account's address, throttled as the API's resend is (R-SEC-9)."""
    lang = lang_of(request)
    try:
        throttle.verification_resend(request, session, user.user.email)
        verification.resend(
            session=session,
            user=user.user,
            settings=settings.auth,
            public_url=settings.mail.public_url,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = lang.gettext(REFUSALS.get(error.code, forms.UNKNOWN_REFUSAL))
        return _form(request, user, message, error.status)
    return page(request, "lite/verify_email_sent.html", {"email": user.user.email}, user=user)
