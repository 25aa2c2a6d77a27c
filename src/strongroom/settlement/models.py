"""Settlement and payout-batch tables (R-MERCH-3). Amounts are minor units of ``asset``."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow


class Settlement(Base):
    """One merchant's business day: its charges net of fees and refunds, paid out once.

    ``status``: ``due`` (not sent yet), ``processing`` (the pending payout ``payout_id`` is
    held: merchant wallet → payout clearing; waiting for the connector), ``paid`` (posted),
    ``failed`` (the last attempt was voided, the money back on the merchant's wallet: retried),
    ``nothing_due`` (net ≤ 0 or nothing available)."""

    __tablename__ = "merchant_settlements"
    __table_args__ = (
        UniqueConstraint("merchant_id", "business_day", name="merchant_day"),
        CheckConstraint(
            "status IN ('due', 'processing', 'paid', 'failed', 'nothing_due')", name="status"
        ),
        Index("ix_merchant_settlements_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.id"))
    business_day: Mapped[date] = mapped_column(Date)
    asset: Mapped[str] = mapped_column(String(10))
    charges_count: Mapped[int] = mapped_column(Integer)
    refunds_count: Mapped[int] = mapped_column(Integer)
    charges_minor: Mapped[int] = mapped_column(Amount)
    refunds_minor: Mapped[int] = mapped_column(Amount)
    fees_minor: Mapped[int] = mapped_column(Amount)
    net_minor: Mapped[int] = mapped_column(Amount)
    amount_minor: Mapped[int] = mapped_column(Amount, default=0)
    status: Mapped[str] = mapped_column(String(16), default="due")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    payout_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    connector_reference: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PayoutBatch(Base):
    """An uploaded payout file, validated as a whole (``accepted``), executed row by row
    (``running``) until every row is ``paid`` or ``failed`` (``completed``)."""

    __tablename__ = "merchant_payout_batches"
    __table_args__ = (
        CheckConstraint("status IN ('accepted', 'running', 'completed')", name="status"),
        Index("ix_merchant_payout_batches_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.id"), index=True)
    asset: Mapped[str] = mapped_column(String(10))
    rows_count: Mapped[int] = mapped_column(Integer)
    total_minor: Mapped[int] = mapped_column(Amount)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    actor: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PayoutRow(Base):
    """One row of a payout file; ``payout_id`` is derived from (batch id, reference), so a
    re-run finds the transfer it already made instead of making another."""

    __tablename__ = "merchant_payout_rows"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'processing', 'paid', 'failed')", name="status"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    batch_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("merchant_payout_batches.id"), primary_key=True
    )
    reference: Mapped[str] = mapped_column(String(35), primary_key=True)
    line: Mapped[int] = mapped_column(Integer)
    holder_name: Mapped[str] = mapped_column(String(140))
    bank_code: Mapped[str] = mapped_column(String(12))
    account_number: Mapped[str] = mapped_column(String(32))
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    payout_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    connector_reference: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
