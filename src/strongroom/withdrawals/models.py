"""Withdrawal tables (R-FUND-2, R-FUND-3): one row per withdrawal with its payout attempt, the
user's crypto address book and the user's withdrawal preferences (whitelist mode, the quick
withdrawal limit).

A withdrawal's money is the PENDING ledger transfer ``withdrawal:<id>`` (wallet -> the operator's
payout clearing account), posted (``withdrawal:<id>:post``) when the payout connector pays and
voided (``withdrawal:<id>:void``) when it fails. ``payout_state`` is the crash-safe record of the
attempt: ``queued`` (nothing asked yet), ``sent`` (the attempt and its reference were committed
BEFORE the connector was called: after a crash the connector is asked about the same reference,
never sent a second payout), ``resend`` (the connector answered "unknown reference": the send
never arrived; sent again under the same id), ``stuck`` (still unknown after the most sends:
for an operator), ``paid`` or ``failed``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")
LIVE = text("removed_at IS NULL")
OPEN = text("status = 'pending'")


class Withdrawal(Base):
    __tablename__ = "withdrawals"
    __table_args__ = (
        Index("ix_withdrawals_user", "user_id", "created_at"),
        Index("ix_withdrawals_open", "created_at", postgresql_where=OPEN, sqlite_where=OPEN),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(8))  # fiat / crypto
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    bank_account_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("bank_accounts.id"), nullable=True
    )
    address_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("withdrawal_addresses.id"), nullable=True
    )
    destination: Mapped[str] = mapped_column(String(140))  # account number or address, as sent
    status: Mapped[str] = mapped_column(String(16))  # pending / completed / failed
    payout_state: Mapped[str] = mapped_column(String(16))  # see the module's docstring
    connector: Mapped[str] = mapped_column(String(32))
    payout_reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    transfer_id: Mapped[str] = mapped_column(String(64), unique=True)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WithdrawalAddress(Base):
    """A crypto address in the user's address book; ``whitelisted`` ones are the only
    destinations while the user's whitelist mode is on. Removing stamps ``removed_at``."""

    __tablename__ = "withdrawal_addresses"
    __table_args__ = (
        Index(
            "uq_withdrawal_addresses_live",
            "user_id",
            "asset",
            "address",
            unique=True,
            postgresql_where=LIVE,
            sqlite_where=LIVE,
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    asset: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(128))
    label: Mapped[str | None] = mapped_column(String(60), nullable=True)
    whitelisted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WithdrawalPreference(Base):
    """A user's withdrawal settings; no row means the defaults (whitelist off, the quick
    withdrawal limit of ``withdrawals.service.QUICK_LIMIT_DEFAULT`` USDT-equivalent)."""

    __tablename__ = "withdrawal_preferences"

    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), primary_key=True)
    whitelist_only: Mapped[bool] = mapped_column(Boolean, default=False)
    quick_limit: Mapped[str] = mapped_column(String(40))  # USDT-equivalent, decimal string
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
