"""My data (issue #11 item 7): download everything held about me, and close and erase my
account, each after the step-up (R-SEC-8: the password again, the 2FA code when it is on),
exactly as ``GET /v1/me/data-export`` and ``POST /v1/me/erasure`` do through
``privacy.service`` (whose docstring is the policy). Erasure also asks for an explicit
confirmation (a ticked box). A refusal is settled (``db.settle_refusal``: a wrong password
still counts) and shown in its form; after an erasure the browser's session ends and the
closed-account page is shown."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from strongroom import db
from strongroom.api import SessionDep, SettingsDep
from strongroom.errors import DomainError
from strongroom.identity import two_factor
from strongroom.kyc import service as kyc
from strongroom.privacy import service as privacy
from strongroom.settings import Settings
from strongroom.web import core, sessions
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.lite.security import signed_out, step_up, step_up_refusal
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/privacy"
REFUSALS: Final = {
    "balance_not_zero": N_(
        "Your account still holds money (%(assets)s) or a top-up is on its way: withdraw or "
        "spend it first, then close the account."
    ),
    "export_too_large": N_(
        "There is too much to download at once: contact support for a copy of your data."
    ),
    "document_unreadable": N_("One of your documents could not be opened: contact support."),
    "operator_account": N_("An operator account is closed by an administrator."),
    "confirmation_required": N_("Tick the box to confirm that you want to close your account."),
}


class StepUpForm(BaseModel):
    password: str = Field(default="", max_length=1024)
    otp: str = Field(default="", max_length=32)


class EraseForm(StepUpForm):
    confirm: str = Field(default="", max_length=8)


class ConfirmationRequired(DomainError):
    code = "confirmation_required"
    status = 422


def refusal(lang: Lang, error: DomainError) -> str:
    if error.code in REFUSALS:
        assets = error.details.get("assets") or []
        return lang.gettext(REFUSALS[error.code]) % {"assets": ", ".join(assets) or "-"}
    return step_up_refusal(lang, error)


def _page(
    request: Request,
    user: SignedIn,
    settings: Settings,
    *,
    export_error: str | None = None,
    erase_error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "lite/privacy.html",
        {
            "two_factor": two_factor.is_enabled(user.user),
            "retention_years": settings.privacy.retention_days // 365,
            "export_error": export_error,
            "erase_error": erase_error,
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )


@router.get("/privacy", response_class=HTMLResponse)
def privacy_page(user: SignedInDep, request: Request, settings: SettingsDep) -> HTMLResponse:
    return _page(request, user, settings)


@router.post("/privacy/export", response_class=HTMLResponse)
def export(
    body: Annotated[StepUpForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The step-up, then the ZIP as a download (as ``GET /v1/me/data-export``)."""
    try:
        proof = step_up(request, session, user, settings, body.password, body.otp)
        made = privacy.export(
            session=session,
            user=user.user,
            proof=proof,
            vault=kyc.vault_for(settings.kyc, settings.auth.vault),
            settings=settings.privacy,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request, user, settings, export_error=message, status_code=error.status
        )
    return core.secure_headers(
        Response(
            content=made.content,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{made.filename}"'},
        )
    )


@router.post("/privacy/erase", response_class=HTMLResponse)
def erase(
    body: Annotated[EraseForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The confirmation, the step-up, then the erasure (as ``POST /v1/me/erasure``); the
    browser is signed out and shown the closed-account page."""
    try:
        if body.confirm != "yes":
            raise ConfirmationRequired("tick the box to confirm")
        proof = step_up(request, session, user, settings, body.password, body.otp)
        privacy.erase(
            session=session,
            user=user.user,
            proof=proof,
            store=kyc.vault_for(settings.kyc, settings.auth.vault).store,
            settings=settings.privacy,
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request, user, settings, erase_error=message, status_code=error.status
        )
    response = page(
        request,
        "lite/privacy_erased.html",
        {"retention_years": settings.privacy.retention_days // 365},
        user=None,
    )
    sessions.end(response, request)
    return response
