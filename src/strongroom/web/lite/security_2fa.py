"""Two-step verification (issue #5, R-SEC-3): enrol with a QR code, confirm with a first code,
see the 10 recovery codes once; turn it off with a code.

- **Start** (POST ``/app/security/2fa/start``) begins an enrolment (a new secret, not yet
  active) and redirects to the page, which shows the pending secret as text and as a QR code.
  The QR code is an SVG made by segno (``identity.totp.qr_svg``, the one of
  ``GET /v1/me/2fa/qr.svg``) in a ``data:`` URI: the page's CSP allows images from ``data:``,
  and an SVG shown as an image runs nothing.
- **Confirm** (POST ``/app/security/2fa/confirm``) turns 2FA on with a first code; the answer
  to that POST is the only page that ever shows the recovery codes (not stored, ``no-store``):
  a refresh finds 2FA on and says so instead.
- **Turn off** (POST ``/app/security/2fa/disable``) needs a current code or a recovery code.

Wrong codes count towards the 2FA block (the identity service keeps them), so a refusal is
settled (``db.settle_refusal``) before it is shown: the count stays, the rest is rolled back.
"""

from __future__ import annotations

import base64
from typing import Final
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity import totp, two_factor
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.account import refusal_text
from strongroom.web.lite.layout import PREFIX
from strongroom.web.lite.security import PATH, OtpField, after_change, security_page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
TWO_FACTOR_PATH: Final = "/app/security/2fa"
SECRET_GROUP_CHARS: Final = 4
REFUSALS: Final = {
    "no_enrolment_in_progress": N_("Start the set-up first: it may have been restarted."),
    "two_factor_already_enabled": N_("Two-step verification is already on."),
    "two_factor_not_enabled": N_("Two-step verification is already off."),
    "otp_reused": N_("That code was used already. Wait for the next one in your app."),
}


def _refusal(lang: Lang, error: DomainError) -> str:
    if error.code in REFUSALS:
        return lang.gettext(REFUSALS[error.code])
    return refusal_text(lang, error)


def _grouped(secret: str) -> str:
    """``ABCDEFGH...`` → ``ABCD EFGH ...``: easier to type into an app by hand."""
    return " ".join(
        secret[index : index + SECRET_GROUP_CHARS]
        for index in range(0, len(secret), SECRET_GROUP_CHARS)
    )


def _pending(session: Session, user: SignedIn, settings: Settings) -> tuple[str, str] | None:
    """The secret and QR code (``data:`` URI) of the enrolment in progress, if there is one."""
    try:
        uri = two_factor.pending_uri(session=session, user=user.user, settings=settings.auth)
    except DomainError:
        return None
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    svg = base64.b64encode(totp.qr_svg(uri).encode()).decode()
    return secret, f"data:image/svg+xml;base64,{svg}"


def _page(
    request: Request,
    user: SignedIn,
    session: Session,
    settings: Settings,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    enabled = two_factor.is_enabled(user.user)
    pending = None if enabled else _pending(session, user, settings)
    context = {
        "enabled": enabled,
        "pending": pending is not None,
        "secret": _grouped(pending[0]) if pending else None,
        "qr": pending[1] if pending else None,
        "codes_left": (
            two_factor.recovery_codes_left(session=session, user_id=user.user.id)
            if enabled
            else None
        ),
        "error": error,
    }
    return security_page(
        request,
        "lite/security_2fa.html",
        context,
        user=user,
        session=session,
        status_code=status_code,
    )


@router.get("/security/2fa", response_class=HTMLResponse)
def two_factor_page(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    return _page(request, user, session, settings)


@router.post("/security/2fa/start")
def start(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Begin (or begin again, with a new secret) an enrolment; the page shows it."""
    try:
        identity.begin_two_factor(session=session, user=user.user, settings=settings.auth)
    except DomainError as refused:  # on already
        error = db.settle_refusal(session, refused)
        return _page(request, user, session, settings, _refusal(lang_of(request), error), 409)
    return core.secure_headers(RedirectResponse(TWO_FACTOR_PATH, status_code=303))


@router.post("/security/2fa/confirm", response_class=HTMLResponse)
def confirm(
    otp: OtpField,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Turn 2FA on with a first code; this answer shows the recovery codes, once."""
    lang = lang_of(request)
    if two_factor.is_enabled(user.user):  # sent again (a refresh): the codes are not shown again
        message = lang.gettext(REFUSALS["two_factor_already_enabled"])
        return _page(request, user, session, settings, message, 409)
    try:
        codes = identity.confirm_two_factor(
            session=session,
            user=user.user,
            otp=otp,
            settings=settings.auth,
            keep_session_id=user.session.id,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)  # a wrong code counts towards the block
        return _page(request, user, session, settings, _refusal(lang, error), error.status)
    return security_page(
        request, "lite/security_2fa_codes.html", {"codes": codes}, user=user, session=session
    )


@router.post("/security/2fa/disable", response_class=HTMLResponse)
def disable(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    otp: OtpField = "",
) -> Response:
    """Turn 2FA off with a current code or a recovery code."""
    try:
        identity.disable_two_factor(
            session=session,
            user=user.user,
            otp=otp or None,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)  # a wrong code counts towards the block
        message = _refusal(lang_of(request), error)
        return _page(request, user, session, settings, message, error.status)
    return after_change(request, PATH, "two_factor_off")
