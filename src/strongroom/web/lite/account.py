"""Sign up, sign in (password, then the 2FA code when it is on), sign out, and sign out
everywhere: the Lite app's account screens (issue #5, phase 1).

Each handler calls the identity service as the API does and owns the transaction the same way:
commit on success, and also on a refusal that the service recorded (failure counts, locks,
audit events, alert emails), then show the refusal in the form. Refusals are shown by code
(``REFUSALS``), translated; a wrong email and a wrong password read the same, and a locked
sign-in says so whether or not the email has an account (the service locks unknown emails too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom.api import SessionDep, SettingsDep
from strongroom.db import utcnow
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity.audit import Origin
from strongroom.identity.schemas import LoginIn, RegisterIn
from strongroom.settings import Settings
from strongroom.web import core, errors, sessions
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite.layout import HOME, PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

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
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")
REGIONS: Final = (("HK", N_("Hong Kong")), ("CN", N_("Mainland China")))


def refusal_text(lang: Lang, error: DomainError) -> str:
    """The translated sentence for a refusal of the identity service."""
    text = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL))
    until = error.details.get("locked_until") or error.details.get("blocked_until")
    if until is not None:
        text = text % {"until": lang.when(datetime.fromisoformat(str(until)))}
    return text


def _origin(request: Request) -> Origin:
    return Origin(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def _after_sign_in(request: Request) -> str:
    return core.local_path(request.query_params.get("next"), HOME, (HOME,))


def _signed_in_now(request: Request, issued: identity.IssuedToken) -> Response:
    response = RedirectResponse(_after_sign_in(request), status_code=303)
    sessions.start(response, request, issued)
    return core.secure_headers(response)


def _login(
    session: Session, settings: Settings, request: Request, body: LoginIn
) -> identity.IssuedToken:
    """``identity.service.login``; commits what a refusal recorded before raising it."""
    origin = _origin(request)
    try:
        return identity.login(
            session=session,
            email=body.email,
            password=body.password,
            otp=body.otp,
            settings=settings.auth,
            ip=origin.ip,
            user_agent=origin.user_agent,
        )
    except DomainError:
        session.commit()
        raise


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
    """Open an account, then sign in to it."""
    try:
        identity.register(
            session=session,
            email=body.email,
            password=body.password,
            name=body.name,
            region=body.region,
            settings=settings.auth,
            origin=_origin(request),
        )
    except DomainError as error:
        session.rollback()
        shown = body.model_copy(update={"password": ""})
        return _sign_up_form(request, shown, refusal_text(lang_of(request), error), error.status)
    session.commit()
    try:  # refused only if this email was locked by wrong guesses before it had an account
        issued = _login(
            session, settings, request, LoginIn(email=body.email, password=body.password)
        )
    except DomainError as error:
        message = refusal_text(lang_of(request), error)
        return _sign_in_form(request, body.email, message, error.status)
    session.commit()
    return _signed_in_now(request, issued)


# --------------------------------------------------------------------------- sign in


@router.get("/signin", response_class=HTMLResponse)
def sign_in_page(
    request: Request, user: Annotated[SignedIn | None, Depends(sessions.optional_user)]
) -> Response:
    if user is not None:
        return core.secure_headers(RedirectResponse(_after_sign_in(request), status_code=303))
    return _sign_in_form(request, "", None)


def _sign_in_form(
    request: Request, email: str, error: str | None, status_code: int = 200
) -> HTMLResponse:
    next_path = _after_sign_in(request)
    return page(
        request,
        "lite/signin.html",
        {"email": email, "error": error, "next": next_path if next_path != HOME else None},
        user=None,
        status_code=status_code,
    )


@router.post("/signin", response_class=HTMLResponse)
def sign_in(
    body: Annotated[LoginIn, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The password step; with 2FA on, the sealed first step waits for the code."""
    try:
        issued = _login(session, settings, request, body.model_copy(update={"otp": None}))
    except DomainError as error:
        if error.code != "otp_required":
            message = refusal_text(lang_of(request), error)
            return _sign_in_form(request, body.email, message, error.status)
        target = CODE_PATH + _query(request)
        response = core.secure_headers(RedirectResponse(target, status_code=303))
        sessions.seal_pending(response, request, body.email, body.password, now=utcnow())
        return response
    session.commit()
    return _signed_in_now(request, issued)


def _query(request: Request) -> str:
    next_path = request.query_params.get("next")
    if next_path is None or core.local_path(next_path, HOME, (HOME,)) == HOME:
        return ""
    return "?" + urlencode({"next": next_path})


@router.get("/signin/code", response_class=HTMLResponse)
def code_page(request: Request) -> Response:
    if sessions.unseal_pending(request, now=utcnow()) is None:
        return core.secure_headers(RedirectResponse(SIGN_IN, 303))
    return _code_form(request, None)


def _code_form(request: Request, error: str | None, status_code: int = 200) -> HTMLResponse:
    return page(
        request, "lite/signin_code.html", {"error": error}, user=None, status_code=status_code
    )


@router.post("/signin/code", response_class=HTMLResponse)
def sign_in_with_code(
    otp: OtpField, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The 2FA step: the same sign-in again, now with the code."""
    pending = sessions.unseal_pending(request, now=utcnow())
    if pending is None:
        return core.secure_headers(RedirectResponse(SIGN_IN, 303))
    body = LoginIn(email=pending.email, password=pending.password, otp=otp)
    try:
        issued = _login(session, settings, request, body)
    except DomainError as error:
        message = refusal_text(lang_of(request), error)
        if error.code in ("invalid_otp", "otp_required", "two_factor_blocked"):
            return _code_form(request, message, error.status)
        response = _sign_in_form(request, pending.email, message, error.status)
        sessions.drop_pending(response, request)
        return response
    session.commit()
    return _signed_in_now(request, issued)


# --------------------------------------------------------------------------- sign out


@router.post("/signout")
def sign_out(request: Request, session: SessionDep) -> Response:
    """Revoke this browser's session on the server, then forget it here."""
    user = sessions.optional_user(request, session)
    if user is not None:
        identity.revoke_session(
            session=session, user=user.user, session_id=user.session.id, origin=_origin(request)
        )
        session.commit()
    response = RedirectResponse(SIGN_IN, status_code=303)
    sessions.end(response, request)
    return core.secure_headers(response)


@router.post("/signout/everywhere")
def sign_out_everywhere(user: SignedInDep, request: Request, session: SessionDep) -> Response:
    """Revoke every session of the user (phones, other browsers, API tokens), this one too."""
    identity.revoke_other_sessions(
        session=session, user=user.user, keep_session_id=None, origin=_origin(request)
    )
    session.commit()
    response = RedirectResponse(SIGN_IN, status_code=303)
    sessions.end(response, request)
    return core.secure_headers(response)
