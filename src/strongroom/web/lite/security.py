"""Security settings (issue #5, R-SEC-1/5/6/7): the overview, change of password, the sessions
(revoke one, revoke all others) and the security events. Two-step verification is in
``security_2fa``, the anti-phishing code in ``security_apc``; all share ``security_page()``.

Every security page shows the withdrawal freeze while it lasts (R-SEC-5: any change of a
security setting freezes withdrawals for 24 hours, ``identity.service.record_security_change``)
and, once after a change, one sentence saying what was done: the redirect after the change sets
``sr_done`` (a key of ``DONE``, for a minute, only sent to ``/app/security``) and the next
security page shows it and drops it. A cookie rather than a query parameter, so that no link
from elsewhere can make the page say "your password was changed".

Handlers call the identity service as its API router does, in the request's unit of work: a
refusal shown in a form is settled first (``db.settle_refusal``), so what the service kept (wrong
passwords and codes count towards lockouts and blocks) is committed and the rest rolled back.

Every change asks for the password again, and the 2FA code when it is on, in the same form
(R-SEC-8, ``step_up``): a browser left signed in, or a stolen session cookie, changes no security
setting alone. Wrong passwords there count toward this session's own limit, not the sign-in
lockout; at the limit the session is signed out (``session_revoked``) and the browser is sent
to the sign-in page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep
from strongroom.errors import DomainError
from strongroom.identity import audit, two_factor
from strongroom.identity import service as identity
from strongroom.identity.step_up import StepUp
from strongroom.settings import Settings
from strongroom.web import cookies, core, sessions
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.account import refusal_text
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/security"
SESSIONS_PATH: Final = "/app/security/sessions"
EVENTS_PATH: Final = "/app/security/events"
EVENTS_PAGE_SIZE: Final = 20
USER_AGENT_SHOWN_CHARS: Final = 80
PasswordField = Annotated[str, Form(max_length=1024)]
OtpField = Annotated[str, Form(max_length=32)]
DONE_COOKIE: Final = "sr_done"
DONE_COOKIE_MAX_AGE_S: Final = 60
CursorQuery = Annotated[str | None, Query(max_length=64)]
SIGNED_OUT: Final = frozenset({"session_revoked", "invalid_token"})
"""Step-up refusals after which this browser's session no longer exists."""

DONE: Final = {
    "password": N_("Your password was changed. Your other devices were signed out."),
    "two_factor_off": N_("Two-step verification is off."),
    "apc_set": N_("Your anti-phishing code was saved. Every email from us now shows it."),
    "apc_removed": N_("Your anti-phishing code was removed."),
    "session_revoked": N_("That session was signed out."),
    "others_revoked": N_("Every other session was signed out."),
}
STEP_UP_REFUSALS: Final = {
    "reauthentication_required": N_("Enter your password to make this change."),
    "invalid_credentials": N_("Your password is wrong."),
    "otp_required": N_("Enter the 6-digit code from your authenticator app."),
}
PASSWORD_REFUSALS: Final = {
    "invalid_credentials": N_("Your current password is wrong."),
    "too_short": N_("The new password is too short: use at least %(min)s characters."),
    "too_long": N_("The new password is too long: use at most %(max)s characters."),
    "common_password": N_("The new password is one of the most common ones: choose another."),
    "mismatch": N_("The two new passwords are not the same."),
}
EVENTS: Final = {
    "account.registered": N_("Account created"),
    "login.succeeded": N_("Signed in"),
    "login.failed": N_("Wrong password"),
    "login.locked": N_("Sign-in locked after wrong passwords"),
    "session.revoked": N_("Session signed out"),
    "session.revoked_others": N_("Other sessions signed out"),
    "password.changed": N_("Password changed"),
    "password.reset_requested": N_("Password reset asked for"),
    "password.reset_throttled": N_("Too many password reset requests"),
    "password.reset": N_("Password reset"),
    "email.changed": N_("Email changed"),
    "two_factor.enabled": N_("Two-step verification turned on"),
    "two_factor.disabled": N_("Two-step verification turned off"),
    "two_factor.failed": N_("Wrong two-step code"),
    "two_factor.recovery_code_used": N_("Recovery code used"),
    "anti_phishing_code.set": N_("Anti-phishing code set"),
    "anti_phishing_code.removed": N_("Anti-phishing code removed"),
    "account.sign_up_attempted": N_("Someone tried to sign up with your email"),
    "email.verification_sent": N_("Email confirmation link sent"),
    "email.verified": N_("Email address confirmed"),
    "step_up.failed": N_("Wrong password in security settings"),
    "step_up.session_signed_out": N_("Session signed out after wrong passwords"),
    "two_factor.recovery_codes_regenerated": N_("New recovery codes made"),
    "bank_account.linked": N_("Bank account linked"),
    "bank_account.removed": N_("Bank account removed"),
    "phone.set": N_("Phone number set"),
    "phone.removed": N_("Phone number removed"),
}


BROWSERS: Final = (  # the first that matches names the browser (Edge and Opera say "Chrome")
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("HeadlessChrome", "Headless Chrome"),
    ("Chrome/", "Chrome"),
    ("CriOS/", "Chrome"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("Safari/", "Safari"),
    ("python-httpx", "httpx"),
    ("curl/", "curl"),
)
SYSTEMS: Final = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str | None) -> str | None:
    """``Chrome · Windows`` from a User-Agent header: enough to tell one's devices apart (the
    header is the client's word, so it is shown as such, never trusted)."""
    if not user_agent:
        return None
    browser = next((name for token, name in BROWSERS if token in user_agent), None)
    system = next((name for token, name in SYSTEMS if token in user_agent), None)
    named = " · ".join(part for part in (browser, system) if part)
    return named or user_agent[:USER_AGENT_SHOWN_CHARS]


def security_page(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    user: SignedIn,
    session: Session,
    status_code: int = 200,
) -> HTMLResponse:
    """A security screen: ``template`` with the withdrawal freeze (if any) and the sentence of
    a change just made (shown once)."""
    lang = lang_of(request)
    frozen = identity.withdrawals_frozen_until(session=session, user_id=user.user.id)
    done = cookies.get(request, DONE_COOKIE, path=PATH)
    response = page(
        request,
        template,
        {
            "frozen_until": lang.when(frozen) if frozen is not None else None,
            "done": lang.gettext(DONE[done]) if done in DONE else None,
            **context,
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )
    cookies.drop(response, request, DONE_COOKIE, path=PATH)
    return response


def step_up(
    request: Request,
    session: Session,
    user: SignedIn,
    settings: Settings,
    password: str,
    otp: str = "",
) -> StepUp:
    """R-SEC-8: the password typed in the form again (and the code when 2FA is on), for this
    browser's session."""
    return identity.step_up(
        session=session,
        user=user.user,
        session_id=user.session.id,
        password=password or None,
        otp=otp or None,
        settings=settings.auth,
        origin=forms.origin(request),
    )


def step_up_refusal(lang: Lang, error: DomainError) -> str:
    """The sentence for a refused step-up (or the identity service's other refusals)."""
    if error.code in STEP_UP_REFUSALS:
        return lang.gettext(STEP_UP_REFUSALS[error.code])
    return refusal_text(lang, error)


def signed_out(request: Request, error: DomainError) -> Response | None:
    """The answer to a step-up that signed this session out (too many wrong passwords): to
    the sign-in page, the browser's cookie dropped; None for any other refusal."""
    if error.code not in SIGNED_OUT:
        return None
    response = RedirectResponse(sessions.SIGN_IN_PATH, status_code=303)
    sessions.end(response, request)
    return core.secure_headers(response)


def after_change(request: Request, path: str, done: str) -> Response:
    """POST, redirect, GET: back to ``path``, which then says what was done."""
    response = RedirectResponse(path, status_code=303)
    cookies.put(response, request, DONE_COOKIE, done, max_age_s=DONE_COOKIE_MAX_AGE_S, path=PATH)
    return core.secure_headers(response)


# --------------------------------------------------------------------------- overview


@router.get("/security", response_class=HTMLResponse)
def overview(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    active = identity.active_sessions(session=session, user=user.user, settings=settings.auth)
    return security_page(
        request,
        "lite/security.html",
        {
            "two_factor": two_factor.is_enabled(user.user),
            "apc_set": user.user.anti_phishing_code is not None,
            "session_count": len(active),
        },
        user=user,
        session=session,
    )


# --------------------------------------------------------------------------- password


def _password_form(
    request: Request,
    user: SignedIn,
    session: Session,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return security_page(
        request,
        "lite/security_password.html",
        {"error": error, "two_factor": two_factor.is_enabled(user.user)},
        user=user,
        session=session,
        status_code=status_code,
    )


@router.get("/security/password", response_class=HTMLResponse)
def password_page(user: SignedInDep, request: Request, session: SessionDep) -> HTMLResponse:
    return _password_form(request, user, session)


def password_refusal(lang: Lang, error: DomainError) -> str:
    """R-SEC-1's reasons for a new password, a wrong current one, or the identity service's
    sign-in refusals (lockout, 2FA code)."""
    reason = str(error.details.get("reason", ""))
    if error.code == "weak_password" and reason in PASSWORD_REFUSALS:
        return lang.gettext(PASSWORD_REFUSALS[reason]) % {
            "min": error.details.get("min_chars", ""),
            "max": error.details.get("max_chars", ""),
        }
    if error.code == "invalid_credentials":
        return lang.gettext(PASSWORD_REFUSALS["invalid_credentials"])
    return step_up_refusal(lang, error)


@router.post("/security/password", response_class=HTMLResponse)
def change_password(
    new_password: PasswordField,
    repeat_password: PasswordField,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    otp: OtpField = "",
    current_password: PasswordField = "",  # empty: the step-up says to enter it
) -> Response:
    """Current password (and code with 2FA on), then the new one twice; other sessions end."""
    lang = lang_of(request)
    if new_password != repeat_password:
        message = lang.gettext(PASSWORD_REFUSALS["mismatch"])
        return _password_form(request, user, session, message, 422)
    try:
        proof = step_up(request, session, user, settings, current_password, otp)
        identity.change_password(
            session=session,
            user=user.user,
            new_password=new_password,
            proof=proof,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)  # a wrong password or code still counts
        message = password_refusal(lang, error)
        return signed_out(request, error) or _password_form(
            request, user, session, message, error.status
        )
    return after_change(request, PATH, "password")


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    started: str
    expires: str
    ip: str | None
    device: str | None
    agent: str | None
    current: bool


@router.get("/security/sessions", response_class=HTMLResponse)
def sessions_page(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    lang = lang_of(request)
    rows = [
        SessionRow(
            id=row.id,
            started=lang.when(row.created_at),
            expires=lang.when(row.expires_at),
            ip=row.ip,
            device=device_name(row.user_agent),
            agent=(row.user_agent or "")[:USER_AGENT_SHOWN_CHARS] or None,
            current=row.id == user.session.id,
        )
        for row in identity.active_sessions(session=session, user=user.user, settings=settings.auth)
    ]
    return security_page(
        request,
        "lite/security_sessions.html",
        {"sessions": rows, "others": sum(1 for row in rows if not row.current)},
        user=user,
        session=session,
    )


@router.post("/security/sessions/{session_id}/revoke")
def revoke_session(
    session_id: Annotated[str, Path(max_length=64)],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
) -> Response:
    """Sign one session out (another user's id is ``session_not_found``: a 404 page). The
    current one signs this browser out."""
    identity.revoke_session(
        session=session, user=user.user, session_id=session_id, origin=forms.origin(request)
    )
    if session_id == user.session.id:
        response = RedirectResponse(sessions.SIGN_IN_PATH, status_code=303)
        sessions.end(response, request)
        return core.secure_headers(response)
    return after_change(request, SESSIONS_PATH, "session_revoked")


@router.post("/security/sessions/revoke-others")
def revoke_other_sessions(user: SignedInDep, request: Request, session: SessionDep) -> Response:
    identity.revoke_other_sessions(
        session=session,
        user=user.user,
        keep_session_id=user.session.id,
        origin=forms.origin(request),
    )
    return after_change(request, SESSIONS_PATH, "others_revoked")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EventRow:
    what: str
    when: str
    ip: str | None
    device: str | None


@router.get("/security/events", response_class=HTMLResponse)
def events_page(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cursor: CursorQuery = None,
) -> HTMLResponse:
    """The user's own security events, newest first, a page at a time (R-SEC-7)."""
    lang = lang_of(request)
    size = min(EVENTS_PAGE_SIZE, settings.auth.audit_page_size_max)
    found = audit.security_events(session=session, user_id=user.user.id, limit=size, cursor=cursor)
    rows = [
        EventRow(
            what=lang.gettext(EVENTS[event.action]) if event.action in EVENTS else event.action,
            when=lang.when(event.occurred_at),
            ip=event.ip,
            device=device_name(event.user_agent),
        )
        for event in found.items
    ]
    older = (
        f"{EVENTS_PATH}?{urlencode({'cursor': found.next_cursor})}" if found.next_cursor else None
    )
    return security_page(
        request,
        "lite/security_events.html",
        {"events": rows, "older": older, "from_cursor": cursor is not None},
        user=user,
        session=session,
    )
