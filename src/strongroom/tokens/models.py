"""Virtual card numbers (R-TOKEN-1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Base, UTCDateTime, utcnow


class VirtualCard(Base):
    """A virtual card number. Only its owner sees the whole number: it is stored sealed with
    the vault key (``number_sealed``, bound to the row's id), and found by
    ``number_digest`` = HMAC-SHA256 under a key derived from the secret key (a plain hash of a
    16-digit number with a known prefix is guessed in seconds). ``last4`` is what merchants
    and lists show. ``merchant_id``: the one merchant that may charge it (an opaque id until
    merchants exist; None: any merchant). ``status``: active, suspended or deleted; a deleted
    number stays, so it is never issued again."""

    __tablename__ = "virtual_cards"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended', 'deleted')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    number_sealed: Mapped[str] = mapped_column(String(255))
    number_key_id: Mapped[str] = mapped_column(String(16))
    number_digest: Mapped[str] = mapped_column(String(64), unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    merchant_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
