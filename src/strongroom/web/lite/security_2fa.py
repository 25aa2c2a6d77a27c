"""Two-step verification (issue #5, R-SEC-3): enrol with a QR code, confirm with a first code,
see the 10 recovery codes once; turn it off with a code.

- **Start** (POST ``/app/security/2fa/start``, with the password: R-SEC-8) begins an
  enrolment (a new secret, not yet active) and redirects to the page, which shows the pending
  secret as text and as a QR code.
  The QR code is an SVG made by segno (``identity.totp.qr_svg``, the one of
  ``GET /v1/me/2fa/qr.svg``) in a ``data:`` URI: the page's CSP allows images from ``data:``,
  and an SVG shown as an image runs nothing.
- **Confirm** (POST ``/app/security/2fa/confirm``) turns 2FA on with a first code and the
  password again; the answer to that POST is the only page that ever shows the recovery codes
  (not stored, ``no-store``): a refresh finds 2FA on and says so instead.
- **Turn off** (POST ``/app/security/2fa/disable``) needs the password and a current code or a
  recovery code; **new recovery codes** (POST ``/app/security/2fa/recovery-codes``) the same,
  and show the new codes once.

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
    return step_up_refusal(lang, error)


def _refused(
    request: Request,
    user: SignedIn,
    session: Session,
    settings: Settings,
    refused: DomainError,
) -> Response:
    """A refusal settled (what the service kept stays: wrong passwords and codes count) and
    shown on the page, or the sign-in page if the step-up signed this session out."""
    error = db.settle_refusal(session, refused)
    message = _refusal(lang_of(request), error)
    return signed_out(request, error) or _page(
        request, user, session, settings, message, error.status
    )


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
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    password: PasswordField = "",
) -> Response:
    """Begin (or begin again, with a new secret) an enrolment, with the password; the page
    shows it."""
    try:
        proof = step_up(request, session, user, settings, password)
        identity.begin_two_factor(
            session=session, user=user.user, proof=proof, settings=settings.auth
        )
    except DomainError as refused:  # a wrong password, or on already
        return _refused(request, user, session, settings, refused)
    return core.secure_headers(RedirectResponse(TWO_FACTOR_PATH, status_code=303))


@router.post("/security/2fa/confirm", response_class=HTMLResponse)
def confirm(
    otp: OtpField,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    password: PasswordField = "",
) -> Response:
    """Turn 2FA on with a first code and the password; this answer shows the recovery
    codes, once."""
    lang = lang_of(request)
    if two_factor.is_enabled(user.user):  # sent again (a refresh): the codes are not shown again
        message = lang.gettext(REFUSALS["two_factor_already_enabled"])
        return _page(request, user, session, settings, message, 409)
    try:
        proof = step_up(request, session, user, settings, password)
        codes = identity.confirm_two_factor(
            session=session,
            user=user.user,
            otp=otp,
            proof=proof,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:  # a wrong password or code counts
        return _refused(request, user, session, settings, refused)
    return _codes_page(request, user, session, "two_factor_on", codes)


def _codes_page(
    request: Request, user: SignedIn, session: Session, made: str, codes: list[str]
) -> HTMLResponse:
    """The recovery codes, shown once (``made``: ``two_factor_on`` or ``recovery_codes``)."""
    return security_page(
        request,
        "lite/security_2fa_codes.html",
        {"codes": codes, "made": made},
        user=user,
        session=session,
    )


@router.post("/security/2fa/disable", response_class=HTMLResponse)
def disable(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    otp: OtpField = "",
    password: PasswordField = "",
) -> Response:
    """Turn 2FA off with the password and a current code or a recovery code."""
    try:
        proof = step_up(request, session, user, settings, password, otp)
        identity.disable_two_factor(
            session=session,
            user=user.user,
            proof=proof,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:  # a wrong password or code counts
        return _refused(request, user, session, settings, refused)
    return after_change(request, PATH, "two_factor_off")


@router.post("/security/2fa/recovery-codes", response_class=HTMLResponse)
def new_recovery_codes(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    otp: OtpField = "",
    password: PasswordField = "",
) -> Response:
    """New recovery codes with the password and a code; the old ones stop working."""
    try:
        proof = step_up(request, session, user, settings, password, otp)
        codes = identity.regenerate_recovery_codes(
            session=session,
            user=user.user,
            proof=proof,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        return _refused(request, user, session, settings, refused)
    return _codes_page(request, user, session, "recovery_codes", codes)
