"""The JSON of virtual card numbers (``/v1/tokens``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TOKEN_ID_PATTERN = r"^vc_[0-9a-f]{24}$"  # noqa: S105  (an id pattern)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the one merchant that may charge it (an opaque id); none: any merchant",
    )


class TokenOut(BaseModel):
    id: str
    last4: str
    merchant_id: str | None
    status: Literal["active", "suspended"]
    created_at: datetime


class TokenCreatedOut(TokenOut):
    number: str = Field(pattern=r"^[0-9]{16}$")


class TokenDetailOut(TokenCreatedOut):
    """One card with its whole number (its owner only)."""


class TokensOut(BaseModel):
    items: list[TokenOut]
