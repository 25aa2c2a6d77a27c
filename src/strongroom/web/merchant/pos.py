"""The web POS for cashiers (``/merchant/pos``): type or scan a customer's payment code, enter
the amount, charge; the result is announced aloud.

The charge runs exactly as ``POST /v1/merchant/charges`` with a payment code does
(``movements.run_once`` around ``merchants.charges.payer_from`` and ``charges.charge``), with
the form's idempotency key (a new one per render) scoped to the merchant and this path: a
double tap charges once. The page after a charge (POST, redirect, GET ``?paid=<charge id>``,
the merchant's own charges only) carries the sentence to announce in the page's language
(``data-announce``, ``data-voice-lang``: ``zh-HK`` or ``en``); ``merchant.js`` speaks it with the
browser's ``speechSynthesis`` when the toggle is on and writes what it announced into the page
(``#announced``), so a test without audio can read it. Scanning uses the browser's
``BarcodeDetector`` on the camera where it exists; typing always works."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.errors import DomainError, InvalidAmount
from strongroom.merchants import charges
from strongroom.merchants import service as merchants
from strongroom.money import AssetRegistry
from strongroom.movements import service as movements
from strongroom.movements.idempotency import Outcome
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.merchant.layout import PREFIX, Member, guard, page

router = APIRouter(prefix=PREFIX)
PATH: Final = "/merchant/pos"
VOICES: Final = {"zh_Hant": "zh-HK", "en": "en"}
SPOKEN_CURRENCY: Final = {"HKD": N_("Hong Kong dollars"), "CNY": N_("yuan")}
ANNOUNCEMENT: Final = N_("Payment received: %(amount)s %(currency)s")
REFUSALS: Final = {
    "payment_code_invalid": N_(
        "That payment code is not valid. Ask the customer to show it again."
    ),
    "payment_code_expired": N_("That payment code has expired. Ask for a fresh one."),
    "payment_code_used": N_("That payment code was already used. Ask for a fresh one."),
    "payment_code_revoked": N_("That payment code's device was removed. Ask for a fresh code."),
    "insufficient_funds": N_("The customer does not have enough money for this payment."),
    "funds_locked": N_("The customer's money is not available yet."),
    "limit_exceeded": N_("This payment is over the customer's limit."),
    "rate_unavailable": N_("No exchange rate is available right now: try again soon."),
    "email_unverified": N_("The customer must verify their email before paying."),
    "idempotency_key_reused": N_(
        "This form was already sent with other values. Check the charges before trying again."
    ),
    "idempotency_key_in_progress": N_("This payment is being made: check the charges."),
}
UNKNOWN_REFUSAL: Final = N_("The payment did not go through. Check what you entered and try again.")
AMOUNT_REFUSAL: Final = N_("Enter an amount such as 12.50.")


class ChargeForm(BaseModel):
    payment_code: str = Field(min_length=1, max_length=64)
    amount: str = Field(min_length=1, max_length=forms.FIELD_MAX_CHARS)
    idempotency_key: str = Field(min_length=8, max_length=forms.FIELD_MAX_CHARS)


def announcement(lang: Lang, amount_minor: int, asset: str, scale: int) -> str:
    currency = lang.gettext(SPOKEN_CURRENCY[asset]) if asset in SPOKEN_CURRENCY else asset
    return lang.gettext(ANNOUNCEMENT) % {
        "amount": lang.amount(amount_minor, scale),
        "currency": currency,
    }


def _pos(
    request: Request,
    session: Session,
    registry: AssetRegistry,
    member: Member,
    *,
    paid: str | None = None,
    error: str | None = None,
    values: ChargeForm | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    merchant = member.principal.merchant
    currency = merchants.currency_of(merchant)
    result = None
    if paid is not None:
        row = charges.get_charge(session=session, merchant=merchant, charge_id=paid)
        scale = registry.get(row.asset).scale
        result = {
            "id": row.id,
            "asset": row.asset,
            "amount": lang.amount(row.amount_minor, scale),
            "announce": announcement(lang, row.amount_minor, row.asset, scale),
        }
    return page(
        request,
        "merchant/pos.html",
        {
            "currency": currency,
            "result": result,
            "error": error,
            "amount": values.amount if values is not None else "",
            "idempotency_key": forms.new_key(),
            "voice": VOICES.get(lang.code, "en"),
        },
        member=member,
        current=PATH,
        status_code=status_code,
    )


@router.get("/pos", response_class=HTMLResponse)
def pos_page(
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    member: Member = guard("charge"),
    paid: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> HTMLResponse:
    return _pos(request, session, registry, member, paid=paid)


def refusal(lang: Lang, error: DomainError) -> str:
    if isinstance(error, InvalidAmount) or error.code in (
        "invalid_amount",
        "unknown_asset",
        "asset_not_accepted",
    ):
        return lang.gettext(AMOUNT_REFUSAL)
    return lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL))


@router.post("/pos", response_class=HTMLResponse)
def charge(
    body: Annotated[ChargeForm, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    member: Member = guard("charge"),
) -> Response:
    """Charge the customer's payment code, once per form; then the result, announced."""
    merchant = member.principal.merchant
    code = "".join(body.payment_code.split())
    amount = body.amount.strip()

    def work(current: Session) -> Outcome:
        money = registry.money(amount, merchants.currency_of(merchant))
        payer = charges.payer_from(
            session=current,
            merchant=merchant,
            settings=settings,
            payment_code=code,
            token=None,
            emv_payload=None,
        )
        row = charges.charge(
            session=current,
            merchant=merchant,
            payer=payer,
            amount=money,
            settings=settings,
            assets=registry,
            actor=member.principal.actor,
        )
        return Outcome(id=row.id, status=row.status)

    try:
        outcome = movements.run_once(
            session=session,
            settings=settings,
            actor_id=merchant.id,
            operation=f"{request.method} {request.url.path}",
            key=body.idempotency_key,
            request={"payment_code": code, "amount": amount},
            work=work,
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        return _pos(
            request,
            session,
            registry,
            member,
            error=refusal(lang_of(request), error),
            values=body,
            status_code=error.status,
        )
    return core.secure_headers(RedirectResponse(f"{PATH}?paid={outcome.id}", status_code=303))
