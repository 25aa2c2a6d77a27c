from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from strongroom.api import (
    AssetsDep,
    IdempotencyKeyHeader,
    SessionDep,
    SettingsDep,
    UserDep,
    submit_transfer,
)
from strongroom.funding import service
from strongroom.money import AMOUNT_JSON_SCHEMA, ASSET_JSON_SCHEMA, required_in_schema

router = APIRouter(prefix="/v1", tags=["funding"])


class TopupIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=required_in_schema("asset", "amount"))

    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None
    amount: Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)] = None
    channel: str = Field(max_length=32)


class TopupOut(BaseModel):
    id: str
    status: str


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
            "`year`, `max_balance`), `invalid_amount`, `unknown_asset`, `validation_error`. "
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
    return submit_transfer(
        request=request,
        session=session,
        settings=settings,
        user=user,
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        prepare=lambda prepared: service.prepare_topup(
            session=prepared, user=user, amount=amount, channel=body.channel, settings=settings
        ),
    )
