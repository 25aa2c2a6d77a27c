"""Sign up, sign in (password, then the 2FA code when it is on), sign out, and sign out
everywhere: the Lite app's account screens (issue #5, phase 1).

Each handler calls the identity service as the API does, in the request's unit of work. A
refusal shown in a form is settled first (``db.settle_refusal``): what the service kept
(failure counts, locks, audit events, alert emails) stays and is committed, the rest is rolled
back. Refusals are shown by code
(``REFUSALS``), translated; a wrong email and a wrong password read the same, and a locked
sign-in says so whether or not the email has an account (the service locks unknown emails too).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, origin_of, throttle
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity.schemas import LoginIn, RegisterIn
from strongroom.web import core, errors, sessions, signin
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite.layout import HOME, PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep
from strongroom.web.signin import SignInFlow

router = APIRouter(prefix=PREFIX)
SIGN_IN: Final = errors.PARTS["/app"].sign_in
CODE_PATH: Final = "/app/signin/code"
OtpField = Annotated[str, Form(max_length=32)]
REFUSALS: Final = {
    "invalid_credentials": N_("The email or password is wrong."),
    "account_locked": N_(
        "Too many wrong attempts: signing in with this email is locked until %(until)s."
    ),
    "invalid_otp": N_("That code is not right. Enter the current code from your app."),
    "otp_required": N_("Enter the 6-digit code from your authenticator app."),
    "two_factor_blocked": N_("Too many wrong codes: try again after %(until)s."),
    "invalid_email": N_("Enter a valid email address."),
    "weak_password": N_("Choose a stronger password: at least 10 characters and not a common one."),
    "invalid_name": N_("Enter your name (up to 200 characters)."),
    "invalid_region": N_("Choose a region from the list."),
    "email_taken": N_("An account with this email exists already. Sign in instead."),
    "rate_limited": N_("Too many attempts: try again after %(until)s."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")
REGIONS: Final = (("HK", N_("Hong Kong")), ("CN", N_("Mainland China")))


def refusal_text(lang: Lang, error: DomainError) -> str:
    """The translated sentence for a refusal of the identity service."""
    return signin.refusal_text(lang, error, REFUSALS, UNKNOWN_REFUSAL)


def _sign_in_form(
    request: Request, email: str, error: str | None, status_code: int = 200
) -> HTMLResponse:
    next_path = FLOW.after_sign_in(request)
    return page(
        request,
        "lite/signin.html",
        {"email": email, "error": error, "next": next_path if next_path != HOME else None},
        user=None,
        status_code=status_code,
    )


def _code_form(request: Request, error: str | None, status_code: int = 200) -> HTMLResponse:
    return page(
        request, "lite/signin_code.html", {"error": error}, user=None, status_code=status_code
    )


FLOW: Final = SignInFlow(
    home=HOME,
    sign_in=SIGN_IN,
    code_path=CODE_PATH,
    next_prefixes=(HOME, "/reserves/verify"),
    operators_only=False,
    refusal=refusal_text,
    password_form=_sign_in_form,
    code_form=_code_form,
)
"""Signing in to the Lite app: anyone with an account; after it, the page asked for."""


# --------------------------------------------------------------------------- sign up


@router.get("/signup", response_class=HTMLResponse)
def sign_up_page(
    request: Request, user: Annotated[SignedIn | None, Depends(sessions.optional_user)]
) -> Response:
    if user is not None:
        return core.secure_headers(RedirectResponse(HOME, status_code=303))
    return _sign_up_form(request, RegisterIn(email="", password="", name=""), None)


def _sign_up_form(
    request: Request, body: RegisterIn, error: str | None, status_code: int = 200
) -> HTMLResponse:
    return page(
        request,
        "lite/signup.html",
        {"form": body, "error": error, "regions": REGIONS},
        user=None,
        status_code=status_code,
    )


@router.post("/signup", response_class=HTMLResponse)
def sign_up(
    body: Annotated[RegisterIn, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Open an account and email its verification link; the same page whether or not the
    email had an account (``identity.service.sign_up``: its owner is told instead), so this
    form tells no one who has an account. Nobody is signed in here: the new user confirms the
    address by the emailed link, then signs in."""
    try:
        throttle.registration(request, session)  # before Argon2 (R-SEC-9)
        identity.sign_up(
            session=session,
            email=body.email,
            password=body.password,
            name=body.name,
            region=body.region,
            settings=settings.auth,
            public_url=settings.mail.public_url,
            origin=origin_of(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        shown = body.model_copy(update={"password": ""})
        return _sign_up_form(request, shown, refusal_text(lang_of(request), error), error.status)
    return page(request, "lite/signup_sent.html", {"email": body.email.strip()}, user=None)


# --------------------------------------------------------------------------- sign in


@router.get("/signin", response_class=HTMLResponse)
def sign_in_page(
    request: Request, user: Annotated[SignedIn | None, Depends(sessions.optional_user)]
) -> Response:
    if user is not None:
        return core.secure_headers(RedirectResponse(FLOW.after_sign_in(request), status_code=303))
    return _sign_in_form(request, "", None)


@router.post("/signin", response_class=HTMLResponse)
def sign_in(
    body: Annotated[LoginIn, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The password step; with 2FA on, a single-use pending sign-in waits for the code."""
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


# --------------------------------------------------------------------------- sign out


@router.post("/signout")
def sign_out(request: Request, session: SessionDep) -> Response:
    """Revoke this browser's session on the server, then forget it here."""
    return FLOW.sign_out(request, session)


@router.post("/signout/everywhere")
def sign_out_everywhere(user: SignedInDep, request: Request, session: SessionDep) -> Response:
    """Revoke every session of the user (phones, other browsers, API tokens), this one too."""
    identity.revoke_other_sessions(
        session=session, user=user.user, keep_session_id=None, origin=origin_of(request)
    )
    return FLOW.signed_out(request)
