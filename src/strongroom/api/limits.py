"""``GET /v1/limits`` (SPEC §13 wave 2): what the signed-in user may still do, per operation."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from strongroom.api import SessionDep, SettingsDep, UserDep
from strongroom.limits import service

router = APIRouter(prefix="/v1", tags=["limits"])

OperationName = Literal[
    "topup",
    "p2p_send",
    "merchant_payment",
    "fiat_withdrawal",
    "crypto_withdrawal",
    "gift",
    "conversion",
]


class LimitOut(BaseModel):
    operation: OperationName
    per_transaction: str | None = Field(
        description="the most one transaction may be, in `currency`; null: no such limit"
    )
    day_left: str | None = Field(
        description="what is left in the rolling 24 hours, in `currency` (BTC-equivalent for "
        "crypto withdrawals); null: no such limit"
    )
    year_left: str | None = Field(description="what is left in the rolling 365 days")
    count_left: int | None = Field(description="withdrawals left in the rolling 24 hours")
    currency: str = Field(description="the unit of the amounts: HKD, or BTC")
    balance_left: str | None = Field(
        description="top-ups: what the fiat wallets may still receive before the max balance"
    )
    required_tier: str | None = Field(
        description="the KYC tier this operation needs (R-KYC-6), null when the user has it"
    )


class LimitsOut(BaseModel):
    tier: str
    limits: list[LimitOut]


@router.get(
    "/limits",
    response_model=LimitsOut,
    responses={401: {"description": "no valid token (`unauthorized`, `invalid_token`)"}},
)
def limits(user: UserDep, session: SessionDep, settings: SettingsDep) -> LimitsOut:
    """The user's tier and, per operation, its limits and what is left now (R-LIMIT-1)."""
    rows = service.overview(session=session, user=user, settings=settings)
    return LimitsOut(
        tier=user.kyc_tier,
        limits=[LimitOut.model_validate(row) for row in service.as_dicts(rows)],
    )
