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

The saved code is never shown (issue #10, finding 3): a stolen session would read it, and with
it forge our emails to its owner. The page says whether one is set; the preview shows only the
code typed. Saving or removing it asks for the password (and the 2FA code when it is on) in the
same form (R-SEC-8). The frame's address carries the typed code sealed (AES-GCM under a key
derived from the secret key, bound to this session, for ``FRAME_TTL_S``), never in clear: a
URL's query string ends up in access logs (finding 6).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import timedelta
from typing import Annotated, Final
from urllib.parse import urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from strongroom import db
from strongroom.api import SessionDep, SettingsDep
from strongroom.db import utcnow
from strongroom.errors import DomainError, NotFound
from strongroom.identity import antiphishing, passwords, two_factor
from strongroom.identity import service as identity
from strongroom.identity.errors import InvalidAntiPhishingCode
from strongroom.identity.models import User
from strongroom.notify import render as mail
from strongroom.settings import Settings
from strongroom.web import cookies, core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX
from strongroom.web.lite.security import (
    PATH,
    OtpField,
    PasswordField,
    after_change,
    security_page,
    signed_out,
    step_up,
    step_up_refusal,
)
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
FRAME_TTL_S: Final = 10 * 60
NONCE_BYTES: Final = 12
SEALED_MAX_CHARS: Final = 256


def _refusal(lang: Lang, error: DomainError) -> str:
    reason = str(error.details.get("reason", ""))
    if error.code == "invalid_anti_phishing_code":
        return lang.gettext(REFUSALS.get(reason, forms.UNKNOWN_REFUSAL))
    return step_up_refusal(lang, error)


def _aead(request: Request) -> AESGCM:
    return AESGCM(cookies.derived_key(request, "anti-phishing-preview"))


def seal_code(request: Request, user: SignedIn, code: str) -> str:
    """``code`` sealed for this session's preview frame, for ``FRAME_TTL_S``."""
    expires = int(utcnow().timestamp()) + FRAME_TTL_S
    nonce = secrets.token_bytes(NONCE_BYTES)
    plain = f"{expires}:{code}".encode()
    sealed = nonce + _aead(request).encrypt(nonce, plain, user.session.id.encode())
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def unseal_code(request: Request, user: SignedIn, value: str) -> str | None:
    """The code of a frame address sealed for this session; None when it is not one, is
    another session's, or expired."""
    if not value or len(value) > SEALED_MAX_CHARS:
        return None
    try:
        sealed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        plain = _aead(request).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], user.session.id.encode()
        )
        expires, _, code = plain.decode().partition(":")
        alive = int(expires) > utcnow().timestamp()
    except (binascii.Error, InvalidTag, ValueError):
        return None
    return code if alive else None


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
    shown = code.strip()  # never the saved code: a session alone does not show it
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
            "frame": f"{EMAIL_PATH}?{urlencode({'p': seal_code(request, user, shown)})}",
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
    return security_page(
        request,
        "lite/security_apc.html",
        {
            "code_set": user.user.anti_phishing_code is not None,
            "two_factor": two_factor.is_enabled(user.user),
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
    request: Request,
    settings: SettingsDep,
    p: Annotated[str, Query(max_length=SEALED_MAX_CHARS)] = "",
) -> Response:
    """The HTML part of the sample email, as its own document for the preview's frame: for
    the code sealed in ``p`` by this session's preview (``seal_code``)."""
    code = unseal_code(request, user, p) or ""
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
    password: PasswordField = "",
    otp: OtpField = "",
) -> Response:
    """Set or change the code (R-APC-1 in full, by the identity service), with the password
    (and the 2FA code when it is on)."""
    lang = lang_of(request)
    typed = code.strip()
    if not typed:
        message = lang.gettext(REFUSALS["empty"])
        return _page(request, user, session, settings, error=message, status_code=422)
    try:
        proof = step_up(request, session, user, settings, password, otp)
        identity.set_anti_phishing_code(
            session=session,
            user=user.user,
            code=typed,
            proof=proof,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)  # a wrong password or code still counts
        return signed_out(request, error) or _page(
            request,
            user,
            session,
            settings,
            typed=typed,
            error=_refusal(lang, error),
            status_code=error.status,
        )
    return after_change(request, PATH, "apc_set")


@router.post("/security/anti-phishing/remove", response_class=HTMLResponse)
def remove(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    password: PasswordField = "",
    otp: OtpField = "",
) -> Response:
    """Remove the code, with the password (and the 2FA code when it is on)."""
    try:
        proof = step_up(request, session, user, settings, password, otp)
        identity.remove_anti_phishing_code(
            session=session,
            user=user.user,
            proof=proof,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = _refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request, user, session, settings, error=message, status_code=error.status
        )
    return after_change(request, PATH, "apc_removed")
