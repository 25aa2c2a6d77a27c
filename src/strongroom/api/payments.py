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
from strongroom.money import AMOUNT_JSON_SCHEMA, ASSET_JSON_SCHEMA, required_in_schema
from strongroom.movements.batcher import Prepared
from strongroom.payments import receipts

router = APIRouter(prefix="/v1", tags=["payments"])


class TransferIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=required_in_schema("asset", "amount"))

    to: str = Field(min_length=1, max_length=254)
    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None
    amount: Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)] = None
    note: str | None = Field(default=None, max_length=140)


class TransferOut(BaseModel):
    id: str
    status: str


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferOut,
    responses={
        201: {"model": TransferOut},
        400: {
            "description": "`malformed_json`, `busy` (the ledger's queue is full: retry), "
            "`same_account`, `cross_region_transfer` (`details.from_region`, `to_region`)"
        },
        401: {"description": "no valid token (`unauthorized`, `invalid_token`)"},
        403: {
            "description": "`email_unverified`: confirm the email first (R-SEC-11); "
            "`kyc_required` (`details {required_tier}`)"
        },
        404: {
            "description": "`recipient_not_found`: no user with that email, phone number (any "
            "common format; without a country code, read in the sender's region) or user id"
        },
        409: {"description": "`idempotency_key_reused`, `idempotency_key_in_progress`"},
        422: {
            "description": "`insufficient_funds`, `funds_locked` (part of the balance is "
            "locked after a purchase, R-TN-2: `details {asset, locked, unlocks_at}`), "
            "`limit_exceeded` (the tier's limits, R-LIMIT-1: `details {limit, limit_amount, "
            "left, frees_at}`), `invalid_note`, `invalid_amount`, `unknown_asset`, "
            "`validation_error`"
        },
    },
)
def create_transfer(
    body: TransferIn,
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
        prepare=lambda prepared: Prepared(
            *receipts.prepare_send(
                session=prepared,
                sender=user,
                to=body.to,
                amount=amount,
                note=body.note,
                limits=settings.ledger,
                settings=settings,
            )
        ),
    )
