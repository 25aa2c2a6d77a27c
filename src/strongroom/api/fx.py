"""FX (R-FX-1): rates, quotes and conversions for users; the operator's rates
(``/v1/admin/fx/rates``, roles holding ``fx.rates``: finance, admin). Thin: ``strongroom.fx``
decides; a conversion runs once per Idempotency-Key in the request's unit of work
(``movements.service.run_once``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy.orm import Session

from strongroom.api import (
    AssetsDep,
    IdempotencyKeyHeader,
    SessionDep,
    SettingsDep,
    UserDep,
    operator_with,
    origin_of,
    throttle,
)
from strongroom.fx import domain
from strongroom.fx import service as fx
from strongroom.fx.models import FxRate
from strongroom.identity.models import User
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.money import (
    AMOUNT_JSON_SCHEMA,
    ASSET_JSON_SCHEMA,
    AssetRegistry,
    Money,
    format_amount,
    required_in_schema,
)
from strongroom.movements import service as movements
from strongroom.movements.idempotency import Outcome
from strongroom.settings import Settings

router = APIRouter(prefix="/v1", tags=["fx"])
FxOperatorDep = Annotated[User, operator_with("fx.rates")]

RATE_JSON_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": r"^[0-9]+(\.[0-9]+)?$",
    "maxLength": 80,
    "examples": ["7.8125"],
    "description": "A decimal string over zero: how many QUOTE one BASE is worth, at most "
    "`fx.rate_decimals_max` decimals and `fx.rate_integer_digits_max` digits before the point "
    "(`invalid_rate` otherwise)",
}
SPREAD_JSON_SCHEMA: Final[dict[str, Any]] = {
    "type": "integer",
    "minimum": 0,
    "maximum": 5000,
    "examples": [25],
    "description": "Basis points charged on each conversion, 0..`fx.spread_bps_max` "
    "(`invalid_spread` otherwise)",
}
AssetPath = Annotated[str, Path(max_length=16, json_schema_extra=ASSET_JSON_SCHEMA)]

UNAUTHORIZED: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "no valid token (`unauthorized`, `invalid_token`, `token_expired`)"}
}
OPERATOR_REFUSED: Final[dict[int | str, dict[str, Any]]] = {
    **UNAUTHORIZED,
    403: {
        "description": "a role without the capability (`forbidden`, `details.roles`: the roles "
        "that have it), an operator without 2FA (`two_factor_required`)"
    },
}


class RateIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=required_in_schema("mid", "spread_bps"))

    mid: Annotated[Any, WithJsonSchema(RATE_JSON_SCHEMA)] = None
    spread_bps: Annotated[Any, WithJsonSchema(SPREAD_JSON_SCHEMA)] = None


class RateOut(BaseModel):
    base: str
    quote: str
    mid: str
    spread_bps: int
    bid: str = Field(description="QUOTE a user gets for one BASE")
    ask: str = Field(description="QUOTE a user pays for one BASE")
    updated_at: datetime


class RatesOut(BaseModel):
    items: list[RateOut]


class QuoteIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra=required_in_schema("from_asset", "to_asset", "amount")
    )

    from_asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None
    to_asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None
    amount: Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)] = None


class QuoteOut(BaseModel):
    quote_id: str
    rate: str = Field(description="to_asset per from_asset (major units), spread included")
    from_amount: str
    to_amount: str
    expires_at: datetime
    from_asset: str
    to_asset: str


class ConversionIn(BaseModel):
    quote_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")


class ConversionOut(BaseModel):
    id: str
    status: str


def rate_out(row: FxRate) -> RateOut:
    pair = fx.pair_rate(row)
    return RateOut(
        base=row.base,
        quote=row.quote,
        mid=row.mid,
        spread_bps=row.spread_bps,
        bid=domain.rate_text(pair.bid),
        ask=domain.rate_text(pair.ask),
        updated_at=row.updated_at,
    )


@router.get("/fx/rates", responses={**UNAUTHORIZED})
def list_rates(user: UserDep, session: SessionDep, settings: SettingsDep) -> RatesOut:
    """The operator's rates: one row per pair; the other direction is the same row read the
    other way (a user converting QUOTE to BASE buys BASE at the ask)."""
    rows = fx.rates(session=session, limit=settings.fx.rates_max)
    return RatesOut(items=[rate_out(row) for row in rows])


@router.post(
    "/fx/quotes",
    status_code=201,
    response_model=QuoteOut,
    responses={
        **UNAUTHORIZED,
        **throttle.THROTTLED,
        400: {"description": "`malformed_json`"},
        422: {
            "description": "`invalid_amount`, `unknown_asset`, `same_asset`, `rate_unavailable` "
            "(no rate between the two assets), `amount_too_small` (it would buy less than one "
            "minor unit), `validation_error`"
        },
    },
)
def create_quote(
    body: QuoteIn,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> JSONResponse:
    """A quote valid `fx.quote_ttl_s` seconds (10), for this user only: `from_amount` of
    `from_asset` for `to_amount` of `to_asset`, spread charged, rounded down to a minor unit."""
    throttle.fx_quote(request, session, user.id)
    amount = registry.money(body.amount, body.from_asset)
    to_asset = registry.get(body.to_asset)
    row = fx.quote(
        session=session, user=user, amount=amount, to_asset=to_asset, settings=settings.fx
    )
    out = QuoteOut(
        quote_id=row.id,
        rate=row.rate,
        from_amount=format_amount(row.from_minor, amount.asset.scale),
        to_amount=format_amount(row.to_minor, to_asset.scale),
        expires_at=row.expires_at,
        from_asset=row.from_asset,
        to_asset=row.to_asset,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@router.post(
    "/conversions",
    status_code=201,
    response_model=ConversionOut,
    responses={
        **UNAUTHORIZED,
        400: {"description": "`malformed_json`"},
        403: {"description": "`email_unverified` (R-SEC-11)"},
        404: {"description": "`quote_not_found` (unknown, or another user's)"},
        409: {
            "description": "`quote_expired` (ask for a new quote), `quote_used`, "
            "`idempotency_key_reused`, `idempotency_key_in_progress`"
        },
        422: {
            "description": "`insufficient_funds`, `limit_exceeded` (the tier's limits for "
            "conversions, R-LIMIT-1: `{limit, limit_amount, left, frees_at}`), "
            "`idempotency_key_required`, `invalid_idempotency_key`, `validation_error`"
        },
    },
)
def create_conversion(
    body: ConversionIn,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Convert at a live quote: the two legs (your wallet → the operator's FX account; its FX
    account → your wallet) are linked, both or neither. Locked money (T+N) may be converted: its
    lock moves pro rata to what you receive, until the same time."""
    outcome = movements.run_once(
        session=session,
        settings=settings,
        actor_id=user.id,
        operation=f"{request.method} {request.url.path}",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        work=lambda current: convert_now(current, user, body.quote_id, registry, settings),
    )
    return JSONResponse(outcome.as_dict(), status_code=201)


def convert_now(
    session: Session, user: User, quote_id: str, registry: AssetRegistry, settings: Settings
) -> Outcome:
    """The conversion itself, the API's and the Lite app's (``web.lite.convert``): its outcome
    to store. The one call site of the limits engine for operation kind ``conversion``: its
    check before anything is written (a fast refusal), and its guard on the leg that debits the
    user (checked again after the ledger locked the accounts, with the per-user lock, so
    concurrent conversions cannot together exceed a limit)."""

    def check_limits(current: Session, who: User, amount: Money) -> None:
        limits.check(
            session=current,
            user=who,
            operation=Operation.CONVERSION,
            amount=amount,
            settings=settings,
        )

    conversion = fx.convert(
        session=session,
        user=user,
        quote_id=quote_id,
        assets=registry,
        check_limits=check_limits,
        guard=limits.guard(user=user, operation=Operation.CONVERSION, settings=settings),
    )
    return Outcome(id=conversion.id, status="completed")


@router.put(
    "/admin/fx/rates/{base}/{quote}",
    responses={
        **OPERATOR_REFUSED,
        400: {"description": "`malformed_json`"},
        409: {
            "description": "`inverse_pair_exists` (the pair is set the other way round: "
            "change that one or delete it), `too_many_rates`"
        },
        422: {
            "description": "`invalid_rate`, `invalid_spread`, `unknown_asset`, `same_asset`, "
            "`validation_error`"
        },
    },
)
def put_rate(
    base: AssetPath,
    quote: AssetPath,
    body: RateIn,
    request: Request,
    operator: FxOperatorDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> RateOut:
    """Set the rate of BASE/QUOTE: one BASE is worth `mid` QUOTE; `spread_bps` is charged on
    each conversion either way. Audited (`fx.rate_set`, with the previous values)."""
    row = fx.set_rate(
        session=session,
        operator=operator,
        base=registry.get(base),
        quote=registry.get(quote),
        mid=body.mid,
        spread_bps=body.spread_bps,
        settings=settings.fx,
        origin=origin_of(request),
    )
    return rate_out(row)


@router.delete(
    "/admin/fx/rates/{base}/{quote}",
    status_code=204,
    responses={
        **OPERATOR_REFUSED,
        404: {"description": "`rate_not_found`"},
        422: {"description": "`unknown_asset`, `validation_error`"},
    },
)
def delete_rate(
    base: AssetPath,
    quote: AssetPath,
    request: Request,
    operator: FxOperatorDep,
    session: SessionDep,
    registry: AssetsDep,
) -> Response:
    """Remove the rate of BASE/QUOTE: no more quotes for the pair (audited)."""
    fx.delete_rate(
        session=session,
        operator=operator,
        base=registry.get(base),
        quote=registry.get(quote),
        origin=origin_of(request),
    )
    return Response(status_code=204)
