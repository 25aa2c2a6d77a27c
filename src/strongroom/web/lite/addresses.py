"""The crypto address book and whitelist mode (issue #12, R-FUND-2, R-SEC-5, R-SEC-8): the
user's addresses (asset, label, whitelisted or not), adding one, removing one, and switching
whitelist-only mode on or off, each after the step-up (the password again, the 2FA code when it
is on), exactly as ``/v1/withdrawal-addresses`` and ``PUT /v1/withdrawal-settings`` do through
``withdrawals.service``: that service alone decides what is a security change (whitelisting an
address, removing a whitelisted one, switching the mode: withdrawals freeze for 24 hours and the
user is emailed), so this page has no rules of its own. The withdraw page offers these
addresses. A refusal is settled (``db.settle_refusal``: a wrong password still counts) and shown
in its form, with what was typed (never the password); after a security change the page shows
the freeze (``lite/_notices.html``)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity import two_factor
from strongroom.limits import service as limits
from strongroom.settings import Settings
from strongroom.web import cookies
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.lite.security import DONE_COOKIE, signed_out, step_up, step_up_refusal
from strongroom.web.sessions import SignedIn, SignedInDep
from strongroom.withdrawals import service

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/addresses"
DONE: Final = {
    "added": N_("The address was added."),
    "whitelisted": N_("The address was added to your whitelist."),
    "removed": N_("The address was removed."),
    "whitelist_on": N_("Whitelist mode is on: withdrawals go only to whitelisted addresses."),
    "whitelist_off": N_("Whitelist mode is off: withdrawals go to any address in your book."),
}
REFUSALS: Final = {
    "asset_not_crypto": N_("Choose a crypto asset: fiat goes to a linked bank account."),
    "invalid_address": N_("An address is %(min)s to %(max)s letters and digits."),
    "invalid_label": N_("A label is at most %(max)s characters."),
    "address_exists": N_("This address is in your address book already."),
    "address_not_found": N_("That address is not in your address book."),
}
AddressIdPath = Annotated[int, Path(ge=1, lt=db.ROW_ID_LIMIT)]


class AddForm(BaseModel):
    """What the user typed (bounded before anything looks at it, P5)."""

    asset: str = Field(default="", max_length=16)
    address: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    label: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    whitelisted: bool = False
    password: str = Field(default="", max_length=1024)
    otp: str = Field(default="", max_length=32)


class StepUpForm(BaseModel):
    password: str = Field(default="", max_length=1024)
    otp: str = Field(default="", max_length=32)


class ModeForm(StepUpForm):
    whitelist_only: bool = False


def refusal(lang: Lang, error: DomainError) -> str:
    if error.code in REFUSALS:
        return lang.gettext(REFUSALS[error.code]) % {
            "min": error.details.get("min", ""),
            "max": error.details.get("max", service.LABEL_MAX_CHARS),
        }
    return step_up_refusal(lang, error)


def crypto_assets(settings: Settings) -> list[str]:
    prices = limits.prices_of(settings)
    return [a.code for a in settings.assets if prices.kind(a.code) == service.CRYPTO]


def _page(
    request: Request,
    user: SignedIn,
    session: Session,
    settings: Settings,
    *,
    form: AddForm | None = None,
    error: str | None = None,
    mode_error: str | None = None,
    remove_error: tuple[int, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    frozen = identity.withdrawals_frozen_until(session=session, user_id=user.user.id)
    done = cookies.get(request, DONE_COOKIE, path=PATH)
    assets = crypto_assets(settings)
    response = page(
        request,
        "lite/addresses.html",
        {
            "addresses": [
                {
                    "id": row.id,
                    "asset": row.asset,
                    "address": row.address,
                    "label": row.label,
                    "whitelisted": row.whitelisted,
                    "added_at": lang.when(row.created_at),
                }
                for row in service.list_addresses(session=session, user=user.user)
            ],
            "whitelist_only": service.preferences(session=session, user=user.user).whitelist_only,
            "assets": assets,
            "label_max": service.LABEL_MAX_CHARS,
            "two_factor": two_factor.is_enabled(user.user),
            "form": (form or AddForm(asset=assets[0] if assets else "")).model_copy(
                update={"password": "", "otp": ""}
            ),
            "error": error,
            "mode_error": mode_error,
            "remove_error": remove_error,
            "done": lang.gettext(DONE[done]) if done in DONE else None,
            "frozen_until": lang.when(frozen) if frozen is not None else None,
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )
    cookies.drop(response, request, DONE_COOKIE, path=PATH)
    return response


def _done(request: Request, done: str) -> Response:
    return forms.done_redirect(request, PATH, DONE_COOKIE, done)


@router.get("/addresses", response_class=HTMLResponse)
def addresses_page(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    return _page(request, user, session, settings)


@router.post("/addresses", response_class=HTMLResponse)
def add(
    body: Annotated[AddForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Check the address, then the step-up, then add it (as ``POST /v1/withdrawal-addresses``)."""
    label = body.label or None
    try:
        service.check_address(
            asset=body.asset, address=body.address, label=label, settings=settings
        )
        proof = step_up(request, session, user, settings, body.password, body.otp)
        service.add_address(
            session=session,
            user=user.user,
            asset=body.asset,
            address=body.address,
            label=label,
            whitelisted=body.whitelisted,
            proof=proof,
            settings=settings,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request, user, session, settings, form=body, error=message, status_code=error.status
        )
    return _done(request, "whitelisted" if body.whitelisted else "added")


@router.post("/addresses/{address_id}/remove", response_class=HTMLResponse)
def remove(
    address_id: AddressIdPath,
    body: Annotated[StepUpForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Remove an address after the step-up (as ``DELETE /v1/withdrawal-addresses/{id}``)."""
    try:
        service.get_address(session=session, user=user.user, address_id=address_id)
        proof = step_up(request, session, user, settings, body.password, body.otp)
        service.remove_address(
            session=session,
            user=user.user,
            address_id=address_id,
            proof=proof,
            settings=settings,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request,
            user,
            session,
            settings,
            remove_error=(address_id, message),
            status_code=error.status,
        )
    return _done(request, "removed")


@router.post("/addresses/whitelist-mode", response_class=HTMLResponse)
def whitelist_mode(
    body: Annotated[ModeForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Switch whitelist-only mode after the step-up (as ``PUT /v1/withdrawal-settings``)."""
    try:
        proof = step_up(request, session, user, settings, body.password, body.otp)
        service.set_preferences(
            session=session,
            user=user.user,
            whitelist_only=body.whitelist_only,
            quick_limit=None,
            proof=proof,
            settings=settings,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request, user, session, settings, mode_error=message, status_code=error.status
        )
    return _done(request, "whitelist_on" if body.whitelist_only else "whitelist_off")
