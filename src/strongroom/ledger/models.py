"""Ledger tables: accounts with the four balance fields, immutable transfers, journal entries.

A transfer moves one amount of one asset from one debit account to one credit account and is
written as two journal entries (one per side). The balance fields on an account are a cache of its
entries, kept in the same transaction and checked by ``strongroom ledger check`` (R-LEDGER-5).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint(
            "owner_type", "owner_id", "kind", "asset", name="uq_ledger_accounts_owner"
        ),
        UniqueConstraint("id", "asset", name="uq_ledger_accounts_id_asset"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    asset: Mapped[str] = mapped_column(String(10))
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    negative_limit_minor: Mapped[int] = mapped_column(Amount, default=0)
    debits_posted: Mapped[int] = mapped_column(Amount, default=0)
    credits_posted: Mapped[int] = mapped_column(Amount, default=0)
    debits_pending: Mapped[int] = mapped_column(Amount, default=0)
    credits_pending: Mapped[int] = mapped_column(Amount, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locks_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """The latest ``unlocks_at`` of any lot written on the account (None: never locked): read
    with the account lock, it tells a debit whether it may use locked money (``Lock``)."""


class Transfer(Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["debit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_transfers_debit_account",
        ),
        ForeignKeyConstraint(
            ["credit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_transfers_credit_account",
        ),
        # A pending transfer is posted or voided at most once.
        UniqueConstraint("pending_id", name="uq_ledger_transfers_pending_id"),
        # the limits' windows: a user's transfers of one code, by time (migration 0012)
        Index("ix_ledger_transfers_debit_code_created", "debit_account_id", "code", "created_at"),
        Index("ix_ledger_transfers_credit_code_created", "credit_account_id", "code", "created_at"),
        Index(
            "ix_ledger_transfers_open_timeouts",
            "timeout_at",
            postgresql_where=text("timeout_at IS NOT NULL"),
            sqlite_where=text("timeout_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    debit_account_id: Mapped[int] = mapped_column(BigId)
    credit_account_id: Mapped[int] = mapped_column(BigId)
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    pending_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("ledger_transfers.id"), nullable=True
    )
    timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    batch_id: Mapped[str] = mapped_column(String(36))  # the request that wrote it
    code: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(280), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Entry(Base):
    """One side of a transfer. ``posted_minor`` >= 0 moves posted balance; ``pending_minor``
    reserves (> 0) or releases (< 0) pending balance. ``balance_after`` is the account's posted
    total (credits - debits) after this entry: the running balance of the statement."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        # On SQLite only since migration 0017: on PostgreSQL the transfer's deferred trigger
        # checks that its entries carry its (foreign-keyed) accounts and asset.
        ForeignKeyConstraint(
            ["account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_entries_account",
        ),
        CheckConstraint("side IN ('D', 'C')", name="side"),
        Index("ix_ledger_entries_account_id_id", "account_id", "id"),
        # one debit and one credit entry per transfer (migration 0004; on PostgreSQL a deferred
        # trigger on the transfer also checks at commit that both exist and carry its amount);
        # also the index for lookups by transfer id (0017 dropped the plain one)
        Index("uq_ledger_entries_transfer_id_side", "transfer_id", "side", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(String(64), ForeignKey("ledger_transfers.id"))
    account_id: Mapped[int] = mapped_column(BigId)
    asset: Mapped[str] = mapped_column(String(10))
    side: Mapped[str] = mapped_column(String(1))
    posted_minor: Mapped[int] = mapped_column(Amount)
    pending_minor: Mapped[int] = mapped_column(Amount)
    balance_after: Mapped[int] = mapped_column(Amount)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lock(Base):
    """A lot of money locked on an account until ``unlocks_at`` (T+N risk holds, R-TN-1).

    Written when a fiat-channel purchase credits an account; read by ``ledger.service.balances``
    into ``Balance.locked`` and ``unlocks``. Which operations may use locked money is decided
    per operation by the limits rules (R-TN-2), not by the ledger's own transfer checks.
    A lot stops counting at ``unlocks_at``; a posted debit that uses locked money consumes
    lots (earliest unlock first) in its transaction: ``consumed_minor`` grows, one
    ``LockUse`` row per lot used. A lot counts ``amount_minor - consumed_minor``."""

    __tablename__ = "ledger_locks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_locks_account",
        ),
        Index("ix_ledger_locks_account_id_unlocks_at", "account_id", "unlocks_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId)
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    unlocks_at: Mapped[datetime] = mapped_column(UTCDateTime)
    transfer_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("ledger_transfers.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    consumed_minor: Mapped[int] = mapped_column(Amount, default=0, server_default=text("0"))


class LockUse(Base):
    """What of a lot one transfer consumed (its debit used locked money): the audit of
    ``Lock.consumed_minor``, and what a conversion carries (``ledger.service.carry_locks``)."""

    __tablename__ = "ledger_lock_uses"
    __table_args__ = (Index("ix_ledger_lock_uses_transfer_id", "transfer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lock_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_locks.id"))
    transfer_id: Mapped[str] = mapped_column(String(64), ForeignKey("ledger_transfers.id"))
    amount_minor: Mapped[int] = mapped_column(Amount)
    unlocks_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
