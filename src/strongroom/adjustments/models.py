"""The adjustments table: one row per proposed manual ledger transfer and its decision."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")

PENDING: Final = "pending"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
STATUSES: Final = (PENDING, APPROVED, REJECTED)


class Adjustment(Base):
    """A manual transfer waiting for, or decided by, a second operator. The database refuses an
    approval by the proposer and an approval without its transfer (``ck_..._maker_checker``)."""

    __tablename__ = "ledger_adjustments"
    __table_args__ = (
        ForeignKeyConstraint(
            ["debit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_adjustments_debit_account",
        ),
        ForeignKeyConstraint(
            ["credit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_adjustments_credit_account",
        ),
        UniqueConstraint("proposed_by", "request_key", name="uq_ledger_adjustments_request_key"),
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint("(status = 'pending') = (decided_by IS NULL)", name="decided"),
        CheckConstraint(
            "status <> 'approved' OR (decided_by <> proposed_by AND transfer_id IS NOT NULL)",
            name="maker_checker",
        ),
        Index("ix_ledger_adjustments_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    debit_account_id: Mapped[int] = mapped_column(BigId)
    credit_account_id: Mapped[int] = mapped_column(BigId)
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    reason: Mapped[str] = mapped_column(String(280))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    proposed_by: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the proposal's Idempotency-Key (a form's hidden key): a resent proposal is not a second one
    request_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id"), nullable=True
    )
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_note: Mapped[str | None] = mapped_column(String(280), nullable=True)
    transfer_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("ledger_transfers.id"), nullable=True
    )
