"""FX rates (R-FX-1): ``/console/fx`` lists the operator's rates per pair (mid, spread, the bid
and ask users get, when and by whom last set) with the form to set one, and a button to delete
one; finance and admin (the roles holding ``fx.rates``). The page calls ``strongroom.fx.service``
exactly as ``PUT``/``DELETE /v1/admin/fx/rates/{base}/{quote}`` do, so the rules (exact
decimal rates, spread bounds, one orientation per pair, audited changes) are the service's.
After a change: 303 back to the list; a refusal shows the list again with a sentence and the
refusal's status, nothing written but the audit trail."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep, origin_of
from strongroom.errors import DomainError
from strongroom.fx import domain
from strongroom.fx import service as fx
from strongroom.money import AssetRegistry
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import N_, lang_of

router = APIRouter(prefix=PREFIX)
PATH: Final = "/console/fx"
RatesGuard = Annotated[Operator, Depends(ConsoleGuard("fx.rates"))]
REFUSALS: Final = {
    "invalid_rate": N_(
        "Enter the mid rate as a decimal number over zero, at most %(decimals)s decimals."
    ),
    "invalid_spread": N_("The spread is a whole number of basis points from 0 to %(max)s."),
    "same_asset": N_("Choose two different assets."),
    "unknown_asset": N_("Choose an asset from the list."),
    "inverse_pair_exists": N_(
        "This pair is set the other way round (%(base)s/%(quote)s): change that one, or delete "
        "it first."
    ),
    "rate_not_found": N_("There is no such rate any more."),
    "too_many_rates": N_("There are as many rates as allowed. Delete one first."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


class RateForm(BaseModel):
    base: str = Field(default="", max_length=16)
    quote: str = Field(default="", max_length=16)
    mid: str = Field(default="", max_length=100)
    spread_bps: str = Field(default="", max_length=10)


class DeleteForm(BaseModel):
    base: str = Field(default="", max_length=16)
    quote: str = Field(default="", max_length=16)


def _list(
    request: Request,
    operator: Operator,
    session: Session,
    registry: AssetRegistry,
    settings: Settings,
    *,
    form: RateForm | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    rows = []
    for row in fx.rates(session=session, limit=settings.fx.rates_max):
        pair = fx.pair_rate(row)
        rows.append(
            {
                "base": row.base,
                "quote": row.quote,
                "mid": row.mid,
                "spread_bps": row.spread_bps,
                "bid": domain.rate_text(pair.bid),
                "ask": domain.rate_text(pair.ask),
                "updated_at": lang.when(row.updated_at),
                "updated_by": row.updated_by or "",
            }
        )
    return page(
        request,
        "console/fx_rates.html",
        {
            "rows": rows,
            "form": form or RateForm(base="USDT", quote="HKD", spread_bps="25"),
            "assets": [asset.code for asset in registry.all()],
            "spread_max": settings.fx.spread_bps_max,
            "error": error,
        },
        operator=operator,
        current=PATH,
        status_code=status_code,
    )


def _refusal(request: Request, error: DomainError, settings: Settings) -> str:
    lang = lang_of(request)
    text = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL))
    values = {
        "decimals": settings.fx.rate_decimals_max,
        "max": settings.fx.spread_bps_max,
        "base": error.details.get("base", ""),
        "quote": error.details.get("quote", ""),
    }
    return text % values if "%(" in text else text


@router.get("/fx", response_class=HTMLResponse)
def rates_page(
    operator: RatesGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    return _list(request, operator, session, registry, settings)


@router.post("/fx", response_class=HTMLResponse)
def set_rate(
    body: Annotated[RateForm, Form()],
    operator: RatesGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Set a rate; then back to the list (POST, redirect, GET)."""
    spread_text = body.spread_bps.strip()
    try:
        fx.set_rate(
            session=session,
            operator=operator.user,
            base=registry.get(body.base),
            quote=registry.get(body.quote),
            mid=body.mid.strip(),
            spread_bps=int(spread_text) if spread_text.isdigit() else spread_text,
            settings=settings.fx,
            origin=origin_of(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = _refusal(request, error, settings)
        return _list(
            request,
            operator,
            session,
            registry,
            settings,
            form=body,
            error=message,
            status_code=error.status,
        )
    return core.secure_headers(RedirectResponse(PATH, status_code=303))


@router.post("/fx/delete", response_class=HTMLResponse)
def delete_rate(
    body: Annotated[DeleteForm, Form()],
    operator: RatesGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    try:
        fx.delete_rate(
            session=session,
            operator=operator.user,
            base=registry.get(body.base),
            quote=registry.get(body.quote),
            origin=origin_of(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = _refusal(request, error, settings)
        return _list(
            request,
            operator,
            session,
            registry,
            settings,
            error=message,
            status_code=error.status,
        )
    return core.secure_headers(RedirectResponse(PATH, status_code=303))
