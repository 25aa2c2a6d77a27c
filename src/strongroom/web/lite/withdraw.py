"""Withdraw (issue #12 item 3, R-FUND-2): to a linked bank account (fiat) or an address of the
address book (crypto), an amount, the 2FA code when the amount is above the quick withdrawal
limit; and the status of the user's withdrawals (pending, completed, failed).

The handler does what ``POST /v1/withdrawals`` does (``api.withdrawals.submit_withdrawal``),
with the idempotency key of the form's render: sending the form twice withdraws once. A refusal
is settled (``db.settle_refusal``: a wrong 2FA code still counts) and shown in the form with
what was typed (never the code). The address book is kept on its own page
(``web.lite.addresses``, as ``/v1/withdrawal-addresses`` does), linked from here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.api import withdrawals as withdrawals_api
from strongroom.banking import service as banking
from strongroom.errors import DomainError, InvalidAmount, NotFound, ValidationFailed
from strongroom.identity import service as identity
from strongroom.identity import two_factor
from strongroom.limits import service as limits
from strongroom.money import AssetRegistry
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep
from strongroom.withdrawals import service

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/withdraw"
BANK: Final = "bank"
ADDRESS: Final = "address"
STATUS_LABELS: Final = {
    "pending": N_("Pending"),
    "completed": N_("Completed"),
    "failed": N_("Failed: the money is back in your wallet"),
}
REFUSALS: Final = {
    "withdrawals_frozen": N_(
        "Withdrawals are paused for 24 hours after a security change, until %(when)s."
    ),
    "two_factor_required": N_(
        "Above your quick withdrawal limit of %(limit)s USDT-equivalent a withdrawal needs "
        "two-factor authentication: turn it on in Security, or withdraw less."
    ),
    "otp_required": N_("Enter the 6-digit code from your authenticator app."),
    "invalid_otp": N_("That code is not right. Try the current code from your app."),
    "two_factor_blocked": N_("Too many wrong codes: wait a while and try again."),
    "destination_not_found": N_("Choose one of your bank accounts or addresses."),
    "address_not_whitelisted": N_("Whitelist mode is on: withdraw to a whitelisted address only."),
    "asset_mismatch": N_(
        "Bank accounts take fiat money (HKD) and addresses take their own crypto asset."
    ),
    "payouts_unavailable": N_("Withdrawals are not available on this installation yet."),
}


class WithdrawForm(BaseModel):
    """What the user typed (bounded before anything looks at it, P5)."""

    destination: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    asset: str = Field(default="", max_length=16)
    amount: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    otp: str = Field(default="", max_length=40)
    idempotency_key: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)


def _destinations(session: Session, signed_in: SignedIn) -> list[tuple[str, str]]:
    user = signed_in.user
    found = [
        (f"{BANK}:{a.id}", f"{a.bank_code} {banking.masked(a.account_number)}")
        for a in banking.list_linked(session=session, user=user)
    ]
    found += [
        (
            f"{ADDRESS}:{a.id}",
            f"{a.asset} {service.masked(service.CRYPTO, a.address)}"
            + (f" ({a.label})" if a.label else ""),
        )
        for a in service.list_addresses(session=session, user=user)
    ]
    return found


def _form(
    request: Request,
    signed_in: SignedIn,
    session: Session,
    registry: AssetRegistry,
    settings: Settings,
    *,
    form: WithdrawForm,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    user = signed_in.user
    frozen = identity.withdrawals_frozen_until(session=session, user_id=user.id)
    rows = service.recent_of_user(session=session, user=user, limit=20)
    prefs = service.preferences(session=session, user=user)
    return page(
        request,
        "lite/withdraw.html",
        {
            "destinations": _destinations(session, signed_in),
            "assets": [a.code for a in registry.all()],
            "form": form,
            "asset": form.asset or forms.default_asset(user),
            "error": error,
            "key": forms.new_key(),
            "two_factor": two_factor.is_enabled(user),
            "quick_limit": prefs.quick_limit,
            "frozen_until": lang.when(frozen) if frozen is not None else None,
            "withdrawals": [
                {
                    "id": w.id,
                    "amount": lang.amount(w.amount_minor, registry.get(w.asset).scale),
                    "asset": w.asset,
                    "destination": service.masked_destination(w),
                    "status": w.status,
                    "status_label": lang.gettext(STATUS_LABELS.get(w.status, w.status)),
                    "at": lang.when(w.created_at),
                }
                for w in rows
            ],
        },
        user=signed_in,
        current=PATH,
        status_code=status_code,
    )


@router.get("/withdraw", response_class=HTMLResponse)
def withdraw_page(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    settings: SettingsDep,
) -> HTMLResponse:
    return _form(request, user, session, registry, settings, form=WithdrawForm())


def _refusal(lang: Lang, error: DomainError, registry: AssetRegistry, settings: Settings) -> str:
    text = REFUSALS.get(error.code)
    if text is None:
        return forms.refusal(lang, error, registry, settings)
    if error.code == "withdrawals_frozen":
        return lang.gettext(text) % {
            "when": lang.when(datetime.fromisoformat(str(error.details.get("frozen_until"))))
        }
    if error.code == "two_factor_required":
        return lang.gettext(text) % {"limit": error.details.get("quick_withdrawal_limit")}
    return lang.gettext(text)


@router.post("/withdraw", response_class=HTMLResponse)
def withdraw(
    body: Annotated[WithdrawForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Withdraw once per form; then back to the page with the new withdrawal pending."""
    lang = lang_of(request)
    shown = body.model_copy(update={"otp": ""})

    def refused(error: DomainError, message: str | None = None) -> HTMLResponse:
        text = message or _refusal(lang, error, registry, settings)
        return _form(
            request,
            user,
            session,
            registry,
            settings,
            form=shown,
            error=text,
            status_code=error.status,
        )

    kind, _, raw_id = body.destination.partition(":")
    if kind not in (BANK, ADDRESS) or not raw_id.isdigit() or not 0 < int(raw_id) < db.ROW_ID_LIMIT:
        return refused(NotFound("no such destination", code="destination_not_found"))
    try:
        money = forms.read_money(registry, body.amount, body.asset)
    except InvalidAmount as error:
        return refused(
            error, forms.amount_refusal(lang, error, body.amount, registry.get(body.asset))
        )
    except DomainError as error:
        return refused(error)
    fiat = limits.prices_of(settings).kind(money.asset.code) == service.FIAT
    if fiat != (kind == BANK):
        return refused(ValidationFailed("asset and destination differ", code="asset_mismatch"))
    try:
        withdrawals_api.submit_withdrawal(
            session=session,
            settings=settings,
            user=user.user,
            key=body.idempotency_key,
            body={"asset": money.asset.code, "amount": body.amount.strip(), "to": body.destination},
            amount=money,
            destination_id=int(raw_id),
            otp=body.otp or None,
            origin=forms.origin(request),
            operation=f"POST {PATH}",
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        return refused(error)
    return core.secure_headers(RedirectResponse(PATH, status_code=303))
