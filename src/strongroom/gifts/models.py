"""A gift and its shares (fixed at creation, R-GIFT-1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")

OPEN = "open"
"""Shares left to claim and time left."""
CLAIMED = "claimed"
"""Every share claimed: nothing goes back."""
EXPIRED = "expired"
"""The time ran out; the unclaimed rest went back to the sender (``refunded_minor``)."""


class Gift(Base):
    """A red packet: ``amount_minor`` of ``asset`` in the gift escrow since ``transfer_id``,
    split into ``shares`` shares (``GiftShare``). The claim code is stored as its SHA-256 (the
    lookup) and sealed with the vault key (the sender sees it again; a copy of the table does
    not open it)."""

    __tablename__ = "gifts"
    __table_args__ = (
        UniqueConstraint("claim_code_hash", name="uq_gifts_claim_code_hash"),
        Index("ix_gifts_sender_id_id", "sender_id", "id"),
        Index("ix_gifts_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sender_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    region: Mapped[str] = mapped_column(String(2))
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    shares: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8), default=OPEN)
    claimed_shares: Mapped[int] = mapped_column(Integer, default=0)
    claimed_minor: Mapped[int] = mapped_column(Amount, default=0)
    refunded_minor: Mapped[int] = mapped_column(Amount, default=0)
    claim_code_hash: Mapped[str] = mapped_column(String(64))
    claim_code_sealed: Mapped[str] = mapped_column(String(255))
    claim_code_key_id: Mapped[str] = mapped_column(String(40))
    transfer_id: Mapped[str] = mapped_column(String(64), ForeignKey("ledger_transfers.id"))
    refund_transfer_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("ledger_transfers.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class GiftShare(Base):
    """One share of a gift, its amount fixed at creation; claimed at most once, and a user
    claims at most one share of a gift (the unique (gift, claimer) pair: NULLs do not clash)."""

    __tablename__ = "gift_shares"
    __table_args__ = (
        UniqueConstraint("gift_id", "claimed_by", name="uq_gift_shares_gift_id_claimed_by"),
    )

    gift_id: Mapped[int] = mapped_column(BigId, ForeignKey("gifts.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    amount_minor: Mapped[int] = mapped_column(Amount)
    claimed_by: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id"), nullable=True
    )
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    transfer_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("ledger_transfers.id"), nullable=True
    )
