from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, WithJsonSchema

from strongroom.db import ROW_ID_LIMIT
from strongroom.ledger.domain import TransferKind
from strongroom.money import AMOUNT_JSON_SCHEMA, ASSET_JSON_SCHEMA


def _number_not_text(value: object) -> object:
    """A JSON number, as documented: `"5"` or `true` is not 5 (lax Pydantic would take them;
    strict Pydantic would refuse `5.0`, which JSON Schema calls an integer)."""
    if isinstance(value, str | bool):
        raise ValueError("must be a number")
    return value


AccountIdIn = Annotated[int, Field(ge=1, lt=ROW_ID_LIMIT), BeforeValidator(_number_not_text)]
"""An account id in a request body: a number the database's key can hold."""
KIND_JSON_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": [kind.value for kind in TransferKind],
    "default": TransferKind.POSTED.value,
}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


class Unlock(BaseModel):
    amount: str
    at: datetime


class BalanceOut(BaseModel):
    asset: str
    total: str
    available: str
    pending: str
    locked: str
    unlocks: list[Unlock] = []


class BalancesOut(BaseModel):
    balances: list[BalanceOut]


class Counterparty(BaseModel):
    type: str
    id: str | None = None
    name: str | None = None


class TransactionOut(BaseModel):
    id: str
    transfer_id: str
    type: str
    kind: str
    direction: str
    status: str
    asset: str
    amount: str
    pending_change: str
    balance_after: str
    counterparty: Counterparty
    note: str | None
    created_at: datetime


class TransactionsOut(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None


class TransferIn(BaseModel):
    """One transfer of an operator batch. ``linked`` ties it to the next one (all or nothing)."""

    id: str | None = Field(default=None, max_length=64)
    kind: Annotated[str, WithJsonSchema(KIND_JSON_SCHEMA)] = "posted"
    debit_account_id: AccountIdIn | None = None
    credit_account_id: AccountIdIn | None = None
    asset: Annotated[str | None, WithJsonSchema(_or_null(ASSET_JSON_SCHEMA))] = None
    amount: Annotated[Any, WithJsonSchema(_or_null(AMOUNT_JSON_SCHEMA))] = None
    pending_id: str | None = Field(default=None, max_length=64)
    timeout_s: Annotated[int, BeforeValidator(_number_not_text)] | None = None
    code: str = Field(default="operator", max_length=32, pattern=r"^[a-z0-9_]+$")
    note: str | None = Field(default=None, max_length=280)
    linked: StrictBool = False


class BatchIn(BaseModel):
    transfers: list[TransferIn]


class TransferResultOut(BaseModel):
    index: int
    id: str
    status: str
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    results: list[TransferResultOut]
    created: int
    failed: int


class AccountIn(BaseModel):
    owner_type: str = Field(pattern=r"^(user|merchant|card|operator)$")
    owner_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=24, pattern=r"^[a-z][a-z0-9_]*$")
    asset: Annotated[str, WithJsonSchema(ASSET_JSON_SCHEMA)]
    allow_negative: StrictBool = False


class AccountOut(BaseModel):
    id: int
    owner_type: str
    owner_id: str
    kind: str
    asset: str
    allow_negative: bool
    total: str
    available: str
    locked: str
    debits_posted: str
    credits_posted: str
    debits_pending: str
    credits_pending: str
