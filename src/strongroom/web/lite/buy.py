"""Buy crypto with fiat at a quote through a top-up channel (issue #12), in three steps.

1. **The form** (``/app/buy``): the fiat to pay in, the crypto to buy, the amount to pay, the
   paying channel (those that carry a purchase, ``funding.purchases.channels``).
2. **The quote**, with the convert screen's countdown (``app.js``: ``data-quote-seconds``; at
   zero htmx asks ``/app/buy/quote`` for a new card). "Buy now" posts the quote id with the
   render's idempotency key to ``/app/buy/confirm``, which buys as ``POST /v1/purchases``
   does (``api.purchases.open_once``, under this form's own operation): once per key and once
   per quote. A quote that expired meanwhile is answered with a fresh one, nothing moved.
3. **The purchase's page** (``/app/buy/<id>``): its status (polled by htmx while pending), how
   to pay (the FPS reference, the card session), how long the price is held, and once bought,
   until when the crypto is locked (T+N).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.api import purchases as purchases_api
from strongroom.errors import DomainError
from strongroom.funding import purchases
from strongroom.funding.models import Purchase, Topup
from strongroom.limits import service as limits
from strongroom.money import AssetRegistry
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite import convert, forms
from strongroom.web.lite.convert import REFUSALS as QUOTE_REFUSALS
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.lite.topup import CHANNEL_LABELS
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/buy"
CONFIRM_OPERATION: Final = "POST /app/buy/confirm"
REFUSALS: Final = {
    **QUOTE_REFUSALS,
    "unknown_channel": N_("Choose how you pay from the list."),
    "not_a_purchase": N_("Pay in a currency and buy a crypto asset."),
}
STATUS_LABELS: Final = {
    "pending": N_("Waiting for your payment"),
    "completed": N_("Bought: the crypto is in your wallet"),
    "fiat_credited": N_(
        "Your payment came after the price was held, or for another amount: it is in your "
        "wallet as you paid it"
    ),
    "failed": N_("Failed: no money moved"),
    "expired": N_("Expired: no money moved"),
}
POLL_S: Final = 5


class BuyForm(BaseModel):
    """What the user typed (bounded before anything looks at it, P5)."""

    pay_asset: str = Field(default="HKD", max_length=16)
    asset: str = Field(default="BTC", max_length=16)
    amount: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    channel: str = Field(default="", max_length=32)


class ConfirmForm(BuyForm):
    quote_id: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    idempotency_key: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)


def _kinds(settings: Settings, registry: AssetRegistry, kind: str) -> list[str]:
    prices = limits.prices_of(settings)
    return [asset.code for asset in registry.all() if prices.kind(asset.code) == kind]


def _refusal(
    request: Request,
    error: DomainError,
    registry: AssetRegistry,
    settings: Settings,
    values: BuyForm,
) -> str:
    return convert.quote_refusal(
        request,
        error,
        registry,
        settings,
        amount=values.amount,
        asset_code=values.pay_asset,
        refusals=REFUSALS,
    )


def _form(
    request: Request,
    user: SignedIn,
    registry: AssetRegistry,
    settings: Settings,
    values: BuyForm,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    offered = purchases.channels(settings)
    return page(
        request,
        "lite/buy.html",
        {
            "form": values,
            "fiat": _kinds(settings, registry, "fiat"),
            "crypto": _kinds(settings, registry, "crypto"),
            "channels": [(name, lang.gettext(CHANNEL_LABELS[name])) for name in offered],
            "error": error,
        },
        user=user,
        current="/app/topup",
        status_code=status_code,
    )


@router.get("/buy", response_class=HTMLResponse)
def buy_page(
    user: SignedInDep, request: Request, settings: SettingsDep, registry: AssetsDep
) -> HTMLResponse:
    offered = purchases.channels(settings)
    values = BuyForm(channel=offered[0] if offered else "")
    return _form(request, user, registry, settings, values)


@router.post("/buy", response_class=HTMLResponse)
def ask_quote(
    body: Annotated[BuyForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """Step 1 → 2: a quote for the typed values, shown with its countdown."""
    values = body.model_copy(update={"amount": body.amount.strip()})
    try:
        quote = convert.new_quote(
            request,
            session,
            user,
            registry,
            settings,
            amount=values.amount,
            from_asset=values.pay_asset,
            to_asset=values.asset,
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        message = _refusal(request, error, registry, settings, values)
        return _form(
            request, user, registry, settings, values, error=message, status_code=error.status
        )
    context = convert.quote_context(request, quote, registry, values)
    return page(request, "lite/buy_quote.html", context, user=user, current="/app/topup")


@router.post("/buy/quote", response_class=HTMLResponse)
def requote(
    body: Annotated[BuyForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """A new quote card for the same values (htmx, when the countdown ends)."""
    try:
        quote = convert.new_quote(
            request,
            session,
            user,
            registry,
            settings,
            amount=body.amount,
            from_asset=body.pay_asset,
            to_asset=body.asset,
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        message = _refusal(request, error, registry, settings, body)
        return core.render(
            request, "lite/_buy_quote.html", {"error": message}, status_code=error.status
        )
    return core.render(
        request, "lite/_buy_quote.html", convert.quote_context(request, quote, registry, body)
    )


@router.post("/buy/confirm", response_class=HTMLResponse)
def confirm(
    body: Annotated[ConfirmForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Buy once per form and per quote; then to the purchase's page (POST, redirect, GET)."""
    try:
        purchase = purchases_api.open_once(
            session=session,
            settings=settings,
            registry=registry,
            user=user.user,
            key=body.idempotency_key,
            body=purchases_api.PurchaseIn.model_construct(
                quote_id=body.quote_id, channel=body.channel
            ),
            operation=CONFIRM_OPERATION,
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        message = _refusal(request, error, registry, settings, body)
        values = BuyForm.model_validate(body.model_dump(include=set(BuyForm.model_fields)))
        if error.code == "quote_expired":
            try:
                quote = convert.new_quote(
                    request,
                    session,
                    user,
                    registry,
                    settings,
                    amount=values.amount,
                    from_asset=values.pay_asset,
                    to_asset=values.asset,
                )
            except DomainError:
                return _form(request, user, registry, settings, values, error=message)
            context = convert.quote_context(request, quote, registry, values) | {"notice": message}
            return page(
                request,
                "lite/buy_quote.html",
                context,
                user=user,
                current="/app/topup",
                status_code=error.status,
            )
        return _form(
            request, user, registry, settings, values, error=message, status_code=error.status
        )
    return core.secure_headers(RedirectResponse(f"{PATH}/{purchase.id}", status_code=303))


def view(
    purchase: Purchase, payment: Topup, registry: AssetRegistry, request: Request
) -> dict[str, object]:
    lang = lang_of(request)
    status = purchases.status(purchase, payment)
    return {
        "id": purchase.id,
        "status": status,
        "status_label": lang.gettext(STATUS_LABELS.get(status, STATUS_LABELS["pending"])),
        "channel": payment.channel,
        "amount": lang.amount(purchase.amount_minor, registry.get(purchase.asset).scale),
        "asset": purchase.asset,
        "pay_amount": lang.amount(purchase.pay_minor, registry.get(purchase.pay_asset).scale),
        "pay_asset": purchase.pay_asset,
        "reference": payment.external_reference,
        "held_until": lang.when(purchase.held_until),
        "unlocks_at": lang.when(purchase.unlocks_at) if purchase.unlocks_at else None,
        "path": f"{PATH}/{purchase.id}",
        "poll_s": POLL_S,
    }


PurchaseIdPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_]+$")]


@router.get("/buy/{purchase_id}", response_class=HTMLResponse)
def purchase_page(
    purchase_id: PurchaseIdPath,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """The user's purchase (another user's answers 404 as a missing one does)."""
    purchase, payment = purchases.of_user(session=session, user=user.user, purchase_id=purchase_id)
    return page(
        request,
        "lite/buy_status.html",
        {"purchase": view(purchase, payment, registry, request)},
        user=user,
        current="/app/topup",
    )
