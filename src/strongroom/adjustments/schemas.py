"""The adjustments' JSON (``/v1/admin/adjustments``): amounts are decimal strings, as
everywhere in the API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema

from strongroom.adjustments.service import TEXT_CHARS_MAX
from strongroom.ledger.schemas import AccountIdIn
from strongroom.money import AMOUNT_JSON_SCHEMA, ASSET_JSON_SCHEMA


class AdjustmentIn(BaseModel):
    debit_account_id: AccountIdIn
    credit_account_id: AccountIdIn
    asset: Annotated[str, WithJsonSchema(ASSET_JSON_SCHEMA)] = Field(min_length=1, max_length=10)
    amount: Annotated[str, WithJsonSchema({**AMOUNT_JSON_SCHEMA, "maxLength": 64})] = Field(
        min_length=1, max_length=64, examples=["125.00"]
    )
    reason: str = Field(min_length=1, max_length=TEXT_CHARS_MAX)


class RejectIn(BaseModel):
    note: str | None = Field(default=None, max_length=TEXT_CHARS_MAX)


class AdjustmentOut(BaseModel):
    id: int
    status: str  # pending | approved | rejected
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount: str
    reason: str
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    transfer_id: str | None


class AdjustmentsOut(BaseModel):
    items: list[AdjustmentOut]
    next_cursor: str | None
