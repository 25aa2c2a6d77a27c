"""Linked bank accounts (R-FUND-2): the withdrawal destinations in the user's own name."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")
LINKED = text("removed_at IS NULL")


class BankAccount(Base):
    """One linked account. Removing it stamps ``removed_at`` (the row stays for the audit trail
    and for the withdrawals that went to it); a user links one account once while it is
    linked (the partial unique index)."""

    __tablename__ = "bank_accounts"
    __table_args__ = (
        Index(
            "uq_bank_accounts_linked",
            "user_id",
            "bank_code",
            "account_number",
            unique=True,
            postgresql_where=LINKED,
            sqlite_where=LINKED,
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    holder_name: Mapped[str] = mapped_column(String(200))
    bank_code: Mapped[str] = mapped_column(String(12))
    account_number: Mapped[str] = mapped_column(String(34))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
