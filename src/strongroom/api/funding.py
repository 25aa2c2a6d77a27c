from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from strongroom.api import (
    AssetsDep,
    IdempotencyKeyHeader,
    SessionDep,
    SettingsDep,
    UserDep,
    submit_transfer,
)
from strongroom.funding import service

router = APIRouter(prefix="/v1", tags=["funding"])


class TopupIn(BaseModel):
    asset: Any = None
    amount: Any = None
    channel: str = Field(max_length=32)


class TopupOut(BaseModel):
    id: str
    status: str


@router.post(
    "/topups", status_code=201, response_model=TopupOut, responses={201: {"model": TopupOut}}
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
            session=prepared, user=user, amount=amount, channel=body.channel
        ),
    )
