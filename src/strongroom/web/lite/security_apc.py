"""The anti-phishing code (issue #5, R-APC-1/2): set, change or remove it, with a live preview
of the top of an email as the user types.

The preview cannot drift from the real emails because it *is* one: the email the user gets
when the code is saved (``security.settings_changed``), rendered by ``notify.render`` with the
typed code, the way the outbox renders every email. The page shows its sender, subject and the
first lines of its plain-text part, and its HTML part in a frame. Emails are styled inline
(``style=`` attributes, as mail clients need), which the app's CSP refuses on our pages; so the
HTML part is its own document (``/app/security/anti-phishing/email``) with its own policy: no
script at all (``sandbox``), inline styles only, no network, framed by this site only.

As the user types, htmx posts the field (``input changed delay:300ms``) to ``.../preview``,
which answers the preview, or the R-APC-1 refusal: the format and the common-password list.
The last rule (the code must not be the password) needs the password hash and is only checked
when saving, like every rule, by ``identity.service.set_anti_phishing_code``: running Argon2 on
every keystroke would cost a hash per pause and make a password oracle of a text field.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from strongroom import db
from strongroom.api import SessionDep, SettingsDep
from strongroom.db import utcnow
from strongroom.errors import DomainError, NotFound
from strongroom.identity import antiphishing, passwords
from strongroom.identity import service as identity
from strongroom.identity.errors import InvalidAntiPhishingCode
from strongroom.identity.models import User
from strongroom.notify import render as mail
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX
from strongroom.web.lite.security import PATH, after_change, security_page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
APC_PATH: Final = "/app/security/anti-phishing"
EMAIL_PATH: Final = "/app/security/anti-phishing/email"
PREVIEW_TEMPLATE: Final = "security.settings_changed"
PREVIEW_CHANGE: Final = "anti-phishing code"
"""What ``identity.service.set_anti_phishing_code`` names the change in that email."""
CODE_MAX_CHARS: Final = 64
CodeField = Annotated[str, Form(max_length=CODE_MAX_CHARS)]
EMAIL_FRAME_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; sandbox"
)
REFUSALS: Final = {
    "format": N_("Use 1 to 6 letters (A-Z, a-z) or digits, nothing else."),
    "common_password": N_("This code is one of the most common passwords: choose another."),
    "equals_password": N_("The code must not be your password."),
    "empty": N_("Enter a code, or remove the one you have."),
}


def _refusal(lang: Lang, error: DomainError) -> str:
    reason = str(error.details.get("reason", ""))
    return lang.gettext(REFUSALS.get(reason, forms.UNKNOWN_REFUSAL))


def _check_while_typing(code: str) -> None:
    """R-APC-1 without the password: its format, then the common-password list."""
    antiphishing.check_format(code)
    if passwords.is_common(code):
        raise InvalidAntiPhishingCode(
            "this code is one of the most common passwords: choose another",
            reason="common_password",
        )


def sample_email(user: User, code: str, settings: Settings) -> mail.RenderedEmail:
    """The email a user gets when ``code`` is saved, rendered as the outbox renders it."""
    now = utcnow()
    context = {
        "name": user.name,
        "change": PREVIEW_CHANGE,
        "at": now,
        "ip": None,
        "frozen_until": now + timedelta(seconds=settings.auth.security_freeze_s),
    }
    return mail.render(PREVIEW_TEMPLATE, context, anti_phishing_code=code)


def _preview_context(
    request: Request, user: SignedIn, settings: Settings, code: str
) -> dict[str, object]:
    """What ``lite/_apc_preview.html`` shows for ``code`` (the saved one when empty)."""
    lang = lang_of(request)
    shown = code.strip() or (user.user.anti_phishing_code or "")
    if not shown:
        return {"preview": None, "preview_error": None}
    try:
        _check_while_typing(shown)
    except DomainError as error:
        return {"preview": None, "preview_error": _refusal(lang, error)}
    email = sample_email(user.user, shown, settings)
    return {
        "preview": {
            "code": shown,
            "sender": settings.mail_from,
            "to": user.user.email,
            "subject": email.subject,
            "text_top": "\n".join(email.text.splitlines()[:2]),
            "frame": f"{EMAIL_PATH}?code={shown}",
        },
        "preview_error": None,
    }


def _page(
    request: Request,
    user: SignedIn,
    session: SessionDep,
    settings: Settings,
    *,
    typed: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    current = user.user.anti_phishing_code
    return security_page(
        request,
        "lite/security_apc.html",
        {
            "current": current,
            "typed": typed,
            "error": error,
            **_preview_context(request, user, settings, typed),
        },
        user=user,
        session=session,
        status_code=status_code,
    )


@router.get("/security/anti-phishing", response_class=HTMLResponse)
def apc_page(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    return _page(request, user, session, settings)


@router.post("/security/anti-phishing/preview", response_class=HTMLResponse)
def preview(
    user: SignedInDep, request: Request, settings: SettingsDep, code: CodeField = ""
) -> HTMLResponse:
    """The preview alone, for htmx as the user types; writes nothing."""
    return core.render(
        request, "lite/_apc_preview.html", _preview_context(request, user, settings, code)
    )


@router.get("/security/anti-phishing/email", response_class=HTMLResponse)
def email_frame(
    user: SignedInDep,
    settings: SettingsDep,
    code: Annotated[str, Query(max_length=CODE_MAX_CHARS)] = "",
) -> Response:
    """The HTML part of the sample email, as its own document for the preview's frame."""
    try:
        _check_while_typing(code)
    except DomainError as error:
        raise NotFound("no preview for this code", code="not_found") from error
    html = sample_email(user.user, code, settings).html
    headers = {
        "Content-Security-Policy": EMAIL_FRAME_POLICY,
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": core.NO_STORE,
    }
    return HTMLResponse(html, headers=headers)


@router.post("/security/anti-phishing", response_class=HTMLResponse)
def save(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: CodeField = "",
) -> Response:
    """Set or change the code (R-APC-1 in full, by the identity service)."""
    lang = lang_of(request)
    typed = code.strip()
    if not typed:
        message = lang.gettext(REFUSALS["empty"])
        return _page(request, user, session, settings, error=message, status_code=422)
    try:
        identity.set_anti_phishing_code(
            session=session,
            user=user.user,
            code=typed,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        return _page(
            request,
            user,
            session,
            settings,
            typed=typed,
            error=_refusal(lang, error),
            status_code=error.status,
        )
    return after_change(request, PATH, "apc_set")


@router.post("/security/anti-phishing/remove")
def remove(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    identity.remove_anti_phishing_code(
        session=session, user=user.user, settings=settings.auth, origin=forms.origin(request)
    )
    return after_change(request, PATH, "apc_removed")
