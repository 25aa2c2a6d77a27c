"""Top-ups (R-FUND-1): ``POST /v1/topups`` for every channel, ``GET /v1/topups/{id}``, the store
terminal's cash confirmation and the connectors' signed webhooks.

A channel that confirms at once (the sandbox's plain top-ups) moves money through the
group-commit batcher as before (201 ``{id: <transfer id>, status: completed}``). A channel that
confirms later (``fps``, ``card``, ``store_cash``, and the sandbox's failure paths chosen by the
amount, see ``funding.connectors``) answers 201 with the top-up's id, its status (``pending``,
``completed``, ``failed``, ``expired``) and the instructions (``reference``, ``instruction``,
``expires_at``). Either way one Idempotency-Key is one top-up."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy.orm import Session

from strongroom.api import (
    AssetsDep,
    IdempotencyKeyHeader,
    ServiceKeyGuard,
    SessionDep,
    SettingsDep,
    UserDep,
    origin_of,
    submit_transfer,
    throttle,
)
from strongroom.errors import Conflict, DomainError, ValidationFailed
from strongroom.funding import connectors, service, topups, webhooks
from strongroom.funding.models import Topup
from strongroom.identity import api_keys
from strongroom.identity.models import User
from strongroom.money import (
    AMOUNT_JSON_SCHEMA,
    ASSET_JSON_SCHEMA,
    AssetRegistry,
    Money,
    format_amount,
    parse_amount,
    required_in_schema,
)
from strongroom.movements import idempotency
from strongroom.settings import Settings

router = APIRouter(prefix="/v1", tags=["funding"])
OPERATION: Final = "POST /v1/topups"


class TopupIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=required_in_schema("asset", "amount"))

    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None
    amount: Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)] = None
    channel: str = Field(max_length=32)


class TopupOut(BaseModel):
    """``id`` and ``status`` always (SPEC §13); the rest for a top-up that confirms later."""

    id: str
    status: str
    channel: str | None = None
    asset: str | None = None
    amount: str | None = None
    received_amount: str | None = None
    instruction: str | None = None
    reference: str | None = None
    expires_at: datetime | None = None
    failure_reason: str | None = None


def topup_view(record: Topup, registry: AssetRegistry) -> dict[str, Any]:
    scale = registry.get(record.asset).scale
    received = record.received_minor
    return TopupOut(
        id=record.id,
        status=topups.api_status(record),
        channel=record.channel,
        asset=record.asset,
        amount=format_amount(record.amount_minor, scale),
        received_amount=None if received is None else format_amount(received, scale),
        instruction=_instruction(record.channel),
        reference=record.external_reference,
        expires_at=record.expires_at,
        failure_reason=record.failure_reason,
    ).model_dump(mode="json")


INSTRUCTIONS: Final = {
    connectors.FPS: connectors.Instruction.REFERENCE,
    connectors.CARD: connectors.Instruction.CARD_SESSION,
    connectors.STORE_CASH: connectors.Instruction.BARCODE,
}


def _instruction(channel: str) -> str:
    return INSTRUCTIONS.get(channel, connectors.Instruction.NONE).value


def instruction_of(channel: str) -> str:
    """What the user does to pay through ``channel`` (a purchase's payment shows it too)."""
    return _instruction(channel)


@router.post(
    "/topups",
    status_code=201,
    response_model=TopupOut,
    responses={
        201: {"model": TopupOut},
        400: {"description": "`malformed_json`, `busy` (the ledger's queue is full: retry)"},
        401: {"description": "no valid token (`unauthorized`, `invalid_token`)"},
        409: {"description": "`idempotency_key_reused`, `idempotency_key_in_progress`"},
        422: {
            "description": "`unknown_channel` (`details.channels`: the channels there are; no "
            "`sandbox` in production), `limit_exceeded` (a sandbox top-up over "
            "`funding.sandbox_max_topup`: `details {limit: sandbox_topup, limit_amount, left, "
            "frees_at: null}`; over the tier's limits, R-LIMIT-1: `details {limit, "
            "limit_amount, left, frees_at}` with `limit` one of `per_transaction`, `day`, "
            "`year`, `max_balance`), `invalid_amount`, `unknown_asset`, `validation_error`, "
            "`idempotency_key_required`. "
            "A crypto asset bought through a fiat channel is locked for N hours (R-TN-1)"
        },
    },
)
def create_topup(
    body: TopupIn,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    amount = registry.money(body.amount, body.asset)
    request_body = body.model_dump(mode="json")
    if confirms_at_once(body.channel, amount, settings):
        return submit_transfer(
            request=request,
            session=session,
            settings=settings,
            user=user,
            key=idempotency_key,
            body=request_body,
            prepare=lambda prepared: service.prepare_topup(
                session=prepared, user=user, amount=amount, channel=body.channel, settings=settings
            ),
        )
    record = request_pending(
        session=session,
        settings=settings,
        user=user,
        key=idempotency_key,
        body=request_body,
        amount=amount,
        channel=body.channel,
    )
    return JSONResponse(topup_view(record, registry), status_code=201)


def confirms_at_once(channel: str, amount: Money, settings: Settings) -> bool:
    """Whether this top-up goes the sandbox's plain way (confirmed in the request, through the
    batcher); an unknown channel goes that way too, to be refused there as before."""
    if channel in connectors.available(settings):
        return connectors.sandbox_scenario(amount) == connectors.Scenario.CONFIRM
    return channel not in connectors.pending_connectors(settings)


def request_pending(
    *,
    session: Session,
    settings: Settings,
    user: User,
    key: str | None,
    body: dict[str, Any],
    amount: Money,
    channel: str,
    operation: str = OPERATION,
) -> Topup:
    """A top-up that confirms later, once per Idempotency-Key in the scope of the user and
    ``operation`` (the Lite form's is its own). The key is claimed in the same transaction as
    the record; a replay answers with the record as it stands now."""
    claim = idempotency.claim_for(
        actor_id=user.id,
        operation=operation,
        key=key,
        request=body,
        key_max_chars=settings.idempotency.key_max_chars,
    )
    replay = idempotency.stored_outcome(session=session, claim=claim)
    if replay is not None:
        return topups.of_user(session=session, user=user, topup_id=replay.id)
    if channel == connectors.SANDBOX:  # its failure paths (``confirms_at_once`` is False)
        record = topups.sandbox(session=session, user=user, amount=amount, settings=settings).topup
    else:
        record = topups.request(
            session=session, user=user, amount=amount, channel=channel, settings=settings
        )
    if not idempotency.claim_all(session=session, claims=[claim]):
        raise idempotency_in_progress()
    outcome = idempotency.Outcome(id=record.id, status=topups.api_status(record))
    idempotency.settle(session=session, done=[(claim, outcome)], refused=[])
    return record


def idempotency_in_progress() -> DomainError:
    return Conflict(
        "a request with this Idempotency-Key is still in progress",
        code="idempotency_key_in_progress",
    )


TopupIdPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_]+$")]


@router.get(
    "/topups/{topup_id}",
    response_model=TopupOut,
    responses={
        401: {"description": "no valid token (`unauthorized`, `invalid_token`)"},
        404: {"description": "`topup_not_found` (also another user's top-up)"},
    },
)
def get_topup(
    topup_id: TopupIdPath, user: UserDep, session: SessionDep, registry: AssetsDep
) -> JSONResponse:
    """A top-up that confirms later, as it stands: the user's own only."""
    record = topups.of_user(session=session, user=user, topup_id=topup_id)
    return JSONResponse(topup_view(record, registry))


class StoreCashIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=required_in_schema("amount"))

    barcode: str = Field(min_length=1, max_length=64, pattern=r"^[0-9]+$")
    amount: Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)] = None
    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None


class ConfirmationOut(BaseModel):
    topup_id: str
    status: str
    outcome: str


StoreKeyDep = Annotated[api_keys.Caller, Depends(ServiceKeyGuard(api_keys.STORE_CASH))]


@router.post(
    "/topups/store-cash/confirmations",
    response_model=ConfirmationOut,
    responses={
        401: {"description": "`api_key_required`, `invalid_api_key`"},
        403: {"description": "`service_key_required` (a person), `insufficient_scope`"},
        404: {"description": "`topup_not_found` (no top-up has this barcode)"},
        410: {"description": "`topup_expired`: the barcode is past its 15 minutes"},
        409: {"description": "`topup_already_failed`"},
        422: {"description": "`invalid_amount`, `asset_mismatch`, `validation_error`"},
    },
)
def confirm_store_cash(
    body: StoreCashIn,
    _terminal: StoreKeyDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> ConfirmationOut:
    """A store's terminal took the cash for a top-up barcode (service key, scope
    ``store_cash``): the user is credited the amount taken, once; a second confirmation of the
    same barcode answers ``duplicate`` and moves nothing."""
    record = topups.by_reference(
        session=session, channel=connectors.STORE_CASH, reference=body.barcode
    )
    if body.asset is not None and body.asset != record.asset:
        raise ValidationFailed(
            f"this top-up is in {record.asset}", code="asset_mismatch", asset=record.asset
        )
    received = parse_amount(body.amount, registry.get(record.asset).scale)
    applied = topups.confirm_at_store(
        session=session, topup=record, received_minor=received, settings=settings
    )
    return ConfirmationOut(
        topup_id=applied.topup.id, status=topups.api_status(applied.topup), outcome=applied.outcome
    )


class WebhookOut(BaseModel):
    outcome: str
    topup_id: str
    status: str


async def raw_body(request: Request) -> bytes:
    return await request.body()


WEBHOOK_BODY: Final = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["event_id", "reference", "status", "amount", "asset"],
                "properties": {
                    "event_id": {"type": "string", "maxLength": 64},
                    "reference": {"type": "string", "maxLength": 64},
                    "status": {"type": "string", "enum": list(webhooks.STATUSES)},
                    "amount": AMOUNT_JSON_SCHEMA,
                    "asset": ASSET_JSON_SCHEMA,
                    "reason": {"type": "string", "maxLength": 64},
                },
            }
        }
    },
}


@router.post(
    "/webhooks/{connector}",
    response_model=WebhookOut,
    openapi_extra={"requestBody": WEBHOOK_BODY},
    responses={
        400: {
            "description": "`signature_missing`, `invalid_timestamp`, "
            "`timestamp_outside_window` (older or newer than `funding.webhook_tolerance_s`: a "
            "replay)"
        },
        401: {"description": "`invalid_signature`"},
        404: {"description": "`unknown_connector`, `topup_not_found`"},
        409: {"description": "`topup_already_failed` (a confirmation after a failure)"},
        422: {"description": "`invalid_webhook`, `asset_mismatch`, `invalid_amount`"},
        **throttle.THROTTLED,
    },
)
def receive_webhook(
    connector: Annotated[str, Path(min_length=1, max_length=32)],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[bytes, Depends(raw_body)],
    timestamp: Annotated[str | None, Header(alias=webhooks.TIMESTAMP_HEADER)] = None,
    signature: Annotated[str | None, Header(alias=webhooks.SIGNATURE_HEADER)] = None,
) -> WebhookOut:
    """A connector's signed notification (``funding.webhooks``: the headers, the HMAC, the
    body). Stored raw whatever comes of it; a duplicate or late notification never credits
    twice."""
    throttle.webhook(request, session)
    received = webhooks.handle(
        session=session,
        connector=connector,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        remote_address=origin_of(request).ip,
        settings=settings,
    )
    return WebhookOut(outcome=received.outcome, topup_id=received.topup_id, status=received.status)
