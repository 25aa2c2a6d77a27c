"""Published audits (R-POR-3): the root and totals of each audit, and the reserves the operator
recorded against it (bank statements, custody or on-chain balances)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class PorAudit(Base):
    __tablename__ = "por_audits"

    audit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    root: Mapped[str] = mapped_column(String(64))
    assets: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    totals: Mapped[dict[str, str]] = mapped_column(JSON)
    leaf_count: Mapped[int] = mapped_column(BigInteger)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    tree_dir: Mapped[str] = mapped_column(String(1024))


class PorReserve(Base):
    __tablename__ = "por_reserves"
    __table_args__ = (
        UniqueConstraint("audit_id", "asset", "source", name="uq_por_reserves_audit_asset_source"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(String(64), ForeignKey("por_audits.audit_id"), index=True)
    asset: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(Amount)
    source: Mapped[str] = mapped_column(String(200))
    evidence_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    as_of: Mapped[date] = mapped_column(Date)
