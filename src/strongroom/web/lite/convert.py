"""Convert between assets at a live quote (R-FX-1, issue #12 item 9), in two steps.

1. **The form** (``/app/convert``): from-asset, to-asset, amount. Sending it asks
   ``fx.service.quote`` for a quote bound to this user, valid ``fx.quote_ttl_s`` seconds.
2. **The quote** shows the amounts, the rate and a countdown (``app.js``:
   ``data-quote-seconds``). When it reaches zero, htmx asks for a new quote
   (``/app/convert/quote``: the same values, the card replaced). "Convert" posts the quote id
   with the render's idempotency key to ``/app/convert/confirm``, which converts as
   ``POST /v1/conversions`` does (``movements.service.run_once`` + ``fx.service.convert``): once
   per key and once per quote. A quote that expired meanwhile (no JavaScript, or a slow click)
   is answered with a fresh quote and a sentence saying so, nothing moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep, throttle
from strongroom.api.fx import convert_now
from strongroom.errors import DomainError, InvalidAmount
from strongroom.fx import service as fx
from strongroom.fx.models import FxQuote
from strongroom.money import AssetRegistry
from strongroom.movements import service as movements
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/convert"
CONFIRM_PATH: Final = "/app/convert/confirm"
REFUSALS: Final = {
    "same_asset": N_("Choose two different assets."),
    "rate_unavailable": N_("There is no rate between these two assets at the moment."),
    "amount_too_small": N_("That amount is too small to convert."),
    "quote_expired": N_("The quote expired before you converted. Here is a new one."),
    "quote_used": N_("This quote was used already. Check your history."),
    "quote_not_found": N_("This quote is not yours or no longer exists. Ask for a new one."),
    "rate_limited": N_("You asked for many quotes in a short time. Wait a minute and try again."),
}


class ConvertForm(BaseModel):
    """What the user typed (bounded before anything looks at it, P5)."""

    from_asset: str = Field(default="", max_length=16)
    to_asset: str = Field(default="", max_length=16)
    amount: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)


class ConfirmForm(ConvertForm):
    quote_id: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    idempotency_key: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)


def _refusal(
    request: Request,
    error: DomainError,
    registry: AssetRegistry,
    settings: Settings,
    values: ConvertForm,
) -> str:
    return quote_refusal(
        request, error, registry, settings, amount=values.amount, asset_code=values.from_asset
    )


def quote_refusal(
    request: Request,
    error: DomainError,
    registry: AssetRegistry,
    settings: Settings,
    *,
    amount: str,
    asset_code: str,
    refusals: Mapping[str, str] = REFUSALS,
) -> str:
    """A refusal of a quote's form in the user's language (this screen's and the buy screen's,
    which passes its own ``refusals``): a bad amount says what was typed in ``asset_code``."""
    lang = lang_of(request)
    if isinstance(error, InvalidAmount) and error.code == "invalid_amount":
        try:
            asset = registry.get(asset_code)
        except DomainError:
            return lang.gettext(forms.REFUSALS["unknown_asset"])
        return forms.amount_refusal(lang, error, amount, asset)
    if error.code in refusals:
        return lang.gettext(refusals[error.code])
    return forms.refusal(lang, error, registry, settings)


def _form(
    request: Request,
    user: SignedIn,
    session: Session,
    registry: AssetRegistry,
    values: ConvertForm,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    held = forms.available_by_asset(session=session, user=user.user)
    return page(
        request,
        "lite/convert.html",
        {
            "form": values,
            "assets": [asset.code for asset in registry.all()],
            "available": {
                asset.code: lang.amount(held[asset.code], asset.scale)
                for asset in registry.all()
                if held.get(asset.code)
            },
            "error": error,
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )


def quote_context(
    request: Request, quote: FxQuote, registry: AssetRegistry, values: BaseModel
) -> dict[str, object]:
    """The quote's part of a page (this screen's and the buy screen's): its amounts in the
    user's language, the seconds it has left, a fresh idempotency key for the form."""
    lang = lang_of(request)
    seconds = max(0, int((quote.expires_at - db.utcnow()).total_seconds()))
    return {
        "form": values,
        "quote": quote,
        "from_amount": lang.amount(quote.from_minor, registry.get(quote.from_asset).scale),
        "to_amount": lang.amount(quote.to_minor, registry.get(quote.to_asset).scale),
        "seconds": seconds,
        "key": forms.new_key(),
        "notice": None,
        "error": None,
    }


def new_quote(
    request: Request,
    session: Session,
    user: SignedIn,
    registry: AssetRegistry,
    settings: Settings,
    *,
    amount: str,
    from_asset: str,
    to_asset: str,
) -> FxQuote:
    """A quote for ``amount`` of ``from_asset`` in ``to_asset``, counted by the same throttle as
    ``POST /v1/fx/quotes`` (this screen's and the buy screen's)."""
    throttle.fx_quote(request, session, user.user.id)  # as POST /v1/fx/quotes counts them
    money = forms.read_money(registry, amount, from_asset)
    return fx.quote(
        session=session,
        user=user.user,
        amount=money,
        to_asset=registry.get(to_asset),
        settings=settings.fx,
    )


@router.get("/convert", response_class=HTMLResponse)
def convert_page(
    user: SignedInDep, request: Request, session: SessionDep, registry: AssetsDep
) -> HTMLResponse:
    home = forms.default_asset(user.user)
    values = ConvertForm(from_asset=home, to_asset="BTC" if home != "BTC" else "HKD")
    return _form(request, user, session, registry, values)


@router.post("/convert", response_class=HTMLResponse)
def ask_quote(
    body: Annotated[ConvertForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """Step 1 → 2: a quote for the typed values, shown with its countdown."""
    values = body.model_copy(update={"amount": body.amount.strip()})
    try:
        quote = new_quote(
            request,
            session,
            user,
            registry,
            settings,
            amount=values.amount,
            from_asset=values.from_asset,
            to_asset=values.to_asset,
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        message = _refusal(request, error, registry, settings, values)
        return _form(
            request, user, session, registry, values, error=message, status_code=error.status
        )
    context = quote_context(request, quote, registry, values)
    return page(request, "lite/convert_quote.html", context, user=user, current=PATH)


@router.post("/convert/quote", response_class=HTMLResponse)
def requote(
    body: Annotated[ConvertForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """A new quote card for the same values (htmx, when the countdown ends)."""
    try:
        quote = new_quote(
            request,
            session,
            user,
            registry,
            settings,
            amount=body.amount,
            from_asset=body.from_asset,
            to_asset=body.to_asset,
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        message = _refusal(request, error, registry, settings, body)
        return core.render(
            request, "lite/_convert_quote.html", {"error": message}, status_code=error.status
        )
    context = quote_context(request, quote, registry, body)
    return core.render(request, "lite/_convert_quote.html", context)


@router.post("/convert/confirm", response_class=HTMLResponse)
def confirm(
    body: Annotated[ConfirmForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Convert once per form and per quote; then to the result (POST, redirect, GET)."""

    try:
        outcome = movements.run_once(
            session=session,
            settings=settings,
            actor_id=user.user.id,
            operation=f"{request.method} {request.url.path}",
            key=body.idempotency_key,
            request={"quote_id": body.quote_id},
            work=lambda current: convert_now(current, user.user, body.quote_id, registry, settings),
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        message = _refusal(request, error, registry, settings, body)
        values = ConvertForm(from_asset=body.from_asset, to_asset=body.to_asset, amount=body.amount)
        if error.code == "quote_expired":
            try:
                quote = new_quote(
                    request,
                    session,
                    user,
                    registry,
                    settings,
                    amount=values.amount,
                    from_asset=values.from_asset,
                    to_asset=values.to_asset,
                )
            except DomainError:
                quote = None
            if quote is not None:
                context = quote_context(request, quote, registry, values) | {"notice": message}
                return page(
                    request,
                    "lite/convert_quote.html",
                    context,
                    user=user,
                    current=PATH,
                    status_code=error.status,
                )
        return _form(
            request, user, session, registry, values, error=message, status_code=error.status
        )
    return core.secure_headers(RedirectResponse(f"{PATH}/done/{outcome.id}", status_code=303))


@router.get("/convert/done/{conversion_id}", response_class=HTMLResponse)
def done(
    conversion_id: Annotated[str, Path(max_length=64)],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """The conversion's result: what left, what arrived, what stays locked (T+N)."""
    lang = lang_of(request)
    try:
        conversion = fx.conversion_of(session=session, user=user.user, conversion_id=conversion_id)
    except DomainError:
        return page(
            request,
            "lite/convert_done.html",
            {"missing": True},
            user=user,
            current=PATH,
            status_code=404,
        )
    quote = session.get_one(FxQuote, conversion.quote_id)
    to_scale = registry.get(quote.to_asset).scale
    context = {
        "missing": False,
        "quote": quote,
        "from_amount": lang.amount(quote.from_minor, registry.get(quote.from_asset).scale),
        "to_amount": lang.amount(quote.to_minor, to_scale),
        "locked": lang.amount(conversion.locked_carried_minor, to_scale)
        if conversion.locked_carried_minor
        else None,
        "when": lang.when(conversion.created_at),
    }
    return page(request, "lite/convert_done.html", context, user=user, current=PATH)
