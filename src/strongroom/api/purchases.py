"""Purchases of crypto paid in fiat at a quote (issue #12): ``POST /v1/purchases`` and
``GET /v1/purchases/{id}``, added beside ``POST /v1/topups`` (whose shape is unchanged).

Thin: ``movements.purchases`` takes the quote, ``funding.purchases`` decides. One
Idempotency-Key is one purchase (required, as for top-ups); a replay answers with the purchase
as it stands now."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom.api import AssetsDep, IdempotencyKeyHeader, SessionDep, SettingsDep, UserDep
from strongroom.api.funding import idempotency_in_progress, instruction_of
from strongroom.funding import purchases
from strongroom.funding.models import Purchase, Topup
from strongroom.identity.models import User
from strongroom.money import AssetRegistry, format_amount
from strongroom.movements import idempotency
from strongroom.movements import purchases as buying
from strongroom.settings import Settings

router = APIRouter(prefix="/v1", tags=["funding"])
OPERATION: Final = "POST /v1/purchases"
ID_PATTERN: Final = r"^[A-Za-z0-9_]+$"


class PurchaseIn(BaseModel):
    quote_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="A live quote from fiat to a crypto asset (`POST /v1/fx/quotes`)",
    )
    channel: str = Field(min_length=1, max_length=32, description="`card`, `fps` or `sandbox`")


class PurchaseOut(BaseModel):
    """A purchase as it stands; ``expires_at`` is the payment's validity (its instructions),
    ``held_until`` how long the quoted price is held for the payment to arrive."""

    id: str
    status: str = Field(
        description="`pending`, `completed` (bought), `fiat_credited` (paid after the price "
        "was held or another amount: credited in the paid asset), `failed`, `expired`"
    )
    asset: str
    amount: str
    pay_asset: str
    pay_amount: str
    rate: str
    quote_id: str
    channel: str
    topup_id: str
    instruction: str
    reference: str
    expires_at: datetime
    held_until: datetime
    received_amount: str | None = None
    unlocks_at: datetime | None = None
    failure_reason: str | None = None


def purchase_view(purchase: Purchase, payment: Topup, registry: AssetRegistry) -> dict[str, Any]:
    bought = registry.get(purchase.asset).scale
    paid = registry.get(purchase.pay_asset).scale
    received = payment.received_minor
    return PurchaseOut(
        id=purchase.id,
        status=purchases.status(purchase, payment),
        asset=purchase.asset,
        amount=format_amount(purchase.amount_minor, bought),
        pay_asset=purchase.pay_asset,
        pay_amount=format_amount(purchase.pay_minor, paid),
        rate=purchase.rate,
        quote_id=purchase.quote_id,
        channel=payment.channel,
        topup_id=payment.id,
        instruction=instruction_of(payment.channel),
        reference=payment.external_reference,
        expires_at=payment.expires_at,
        held_until=purchase.held_until,
        received_amount=None if received is None else format_amount(received, paid),
        unlocks_at=purchase.unlocks_at,
        failure_reason=payment.failure_reason,
    ).model_dump(mode="json")


UNAUTHORIZED: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "no valid token (`unauthorized`, `invalid_token`)"}
}


@router.post(
    "/purchases",
    status_code=201,
    response_model=PurchaseOut,
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
            "description": "`unknown_channel` (`details.channels`: those that carry a "
            "purchase), `not_a_purchase` (the quote does not pay fiat for a crypto asset), "
            "`limit_exceeded` (the tier's top-up limits for the fiat paid and the asset "
            "bought, max balance, the sandbox's cap), `idempotency_key_required`, "
            "`validation_error`. The asset bought is locked for N hours (R-TN-1)"
        },
    },
)
def create_purchase(
    body: PurchaseIn,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Buy a crypto asset at a live quote, paying its fiat amount through `channel`: the price
    is held `funding.purchase_hold_s` (30 minutes) for the payment; the sandbox pays at once
    (its failure paths by the paid amount's last two digits), `card` and `fps` pay by the
    instructions answered (`reference`) and confirm by their signed webhook."""
    purchase = open_once(
        session=session,
        settings=settings,
        registry=registry,
        user=user,
        key=idempotency_key,
        body=body,
    )
    found, payment = purchases.of_user(session=session, user=user, purchase_id=purchase.id)
    return JSONResponse(purchase_view(found, payment, registry), status_code=201)


def open_once(
    *,
    session: Session,
    settings: Settings,
    registry: AssetRegistry,
    user: User,
    key: str | None,
    body: PurchaseIn,
    operation: str = OPERATION,
) -> Purchase:
    """The purchase, once per Idempotency-Key in the scope of the user and ``operation`` (the
    Lite form's is its own): the key is claimed in the same transaction as the records."""
    claim = idempotency.claim_for(
        actor_id=user.id,
        operation=operation,
        key=key,
        request=body.model_dump(mode="json"),
        key_max_chars=settings.idempotency.key_max_chars,
    )
    replay = idempotency.stored_outcome(session=session, claim=claim)
    if replay is not None:
        return purchases.of_user(session=session, user=user, purchase_id=replay.id)[0]
    purchase = buying.buy(
        session=session,
        user=user,
        quote_id=body.quote_id,
        channel=body.channel,
        settings=settings,
        assets=registry,
    )
    if not idempotency.claim_all(session=session, claims=[claim]):
        raise idempotency_in_progress()
    payment = session.get_one(Topup, purchase.topup_id)
    outcome = idempotency.Outcome(id=purchase.id, status=purchases.status(purchase, payment))
    idempotency.settle(session=session, done=[(claim, outcome)], refused=[])
    return purchase


PurchaseIdPath = Annotated[str, Path(min_length=1, max_length=32, pattern=ID_PATTERN)]


@router.get(
    "/purchases/{purchase_id}",
    response_model=PurchaseOut,
    responses={**UNAUTHORIZED, 404: {"description": "`purchase_not_found` (also another's)"}},
)
def get_purchase(
    purchase_id: PurchaseIdPath, user: UserDep, session: SessionDep, registry: AssetsDep
) -> JSONResponse:
    """A purchase as it stands: the user's own only."""
    purchase, payment = purchases.of_user(session=session, user=user, purchase_id=purchase_id)
    return JSONResponse(purchase_view(purchase, payment, registry))
