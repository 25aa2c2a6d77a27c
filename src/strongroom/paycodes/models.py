"""Payment-code devices and the codes already accepted (R-CODE-1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Device(Base):
    """A device that shows a user's payment codes. Its secret is sealed with the vault key
    (``strongroom.vault``, bound to the row's id): the server must recompute codes, so it cannot
    keep only a hash. ``locator`` (7 digits, unique, random) is in every code of the device and
    is never reused, a revoked device's included. ``server_held``: the default device the
    server computes codes with (``POST /v1/payment-codes`` without a device)."""

    __tablename__ = "paycode_devices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    locator: Mapped[int] = mapped_column(Integer, unique=True)
    secret_sealed: Mapped[str] = mapped_column(String(255))
    secret_key_id: Mapped[str] = mapped_column(String(16))
    server_held: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CodeUse(Base):
    """A code that was accepted: one row per device and time step (which is one code), so the
    primary key lets exactly one of any number of concurrent charges have it."""

    __tablename__ = "paycode_uses"

    device_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("paycode_devices.id"), primary_key=True
    )
    step: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
