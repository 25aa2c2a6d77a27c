"""The JSON of devices and payment codes (``/v1/devices``, ``/v1/payment-codes``)."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

ALGORITHM: Final = "strongroom-paycode-v1"
DEVICE_ID_PATTERN = r"^d_[0-9a-f]{24}$"


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Alice's phone"])


class DeviceCreatedOut(BaseModel):
    """The device and its secret, shown this once (docs/payment-codes.md: with ``issuer_id``,
    ``locator`` and ``step_s`` an app computes its codes offline)."""

    device_id: str
    secret: str = Field(description="base32 (RFC 4648, no padding): the HMAC key")
    name: str
    issuer_id: str
    locator: str = Field(description="7 digits, in every code of this device")
    step_s: int
    window_s: int
    algorithm: Literal["strongroom-paycode-v1"] = ALGORITHM


class DeviceOut(BaseModel):
    device_id: str
    name: str
    status: Literal["active", "revoked"]
    server_held: bool = Field(description="the default device the server computes codes with")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class DevicesOut(BaseModel):
    items: list[DeviceOut]


class PaymentCodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)


class PaymentCodeOut(BaseModel):
    code: str = Field(pattern=r"^[0-9]{24}$")
    expires_at: datetime
    device_id: str
