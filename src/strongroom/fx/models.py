"""FX tables: operator rates per pair, quotes bound to a user, conversions (one per quote)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow


class FxRate(Base):
    """One operator rate: one ``base`` is worth ``mid`` ``quote`` (an exact decimal string,
    major units), ``spread_bps`` charged on each conversion. One row per pair of assets, in the
    orientation the operator set first: the other direction is derived from it, never stored
    (so there is never a second price for the same two assets)."""

    __tablename__ = "fx_rates"
    __table_args__ = (
        CheckConstraint("base <> quote", name="distinct_assets"),
        CheckConstraint("spread_bps >= 0 AND spread_bps < 10000", name="spread_bps"),
    )

    base: Mapped[str] = mapped_column(String(10), primary_key=True)
    quote: Mapped[str] = mapped_column(String(10), primary_key=True)
    mid: Mapped[str] = mapped_column(String(64))
    spread_bps: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id"), nullable=True
    )


class FxQuote(Base):
    """A price offered to one user for ``quote_ttl_s`` seconds: ``from_minor`` of
    ``from_asset`` for ``to_minor`` of ``to_asset``, at the pair's rate of that moment. A
    conversion executes exactly these amounts, at most once (``FxConversion.quote_id``)."""

    __tablename__ = "fx_quotes"
    __table_args__ = (
        CheckConstraint("from_asset <> to_asset", name="distinct_assets"),
        CheckConstraint("from_minor > 0 AND to_minor > 0", name="amounts_positive"),
        Index("ix_fx_quotes_user_id_created_at", "user_id", "created_at"),
        Index("ix_fx_quotes_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    from_asset: Mapped[str] = mapped_column(String(10))
    to_asset: Mapped[str] = mapped_column(String(10))
    from_minor: Mapped[int] = mapped_column(Amount)
    to_minor: Mapped[int] = mapped_column(Amount)
    rate: Mapped[str] = mapped_column(String(64))  # shown to the user (to per from, major units)
    # the exact amount the user would receive, ``numerator/denominator`` in to-asset minor
    # units: ``to_minor`` is it rounded down, the rest is the operator's rounding
    to_exact: Mapped[str] = mapped_column(String(400))
    pair_base: Mapped[str] = mapped_column(String(10))
    pair_quote: Mapped[str] = mapped_column(String(10))
    mid: Mapped[str] = mapped_column(String(64))
    spread_bps: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FxConversion(Base):
    """A conversion at a quote: the two linked legs (user → FX account of the from-asset, FX
    account of the to-asset → user) and the locked amount carried (T+N). ``quote_id`` is unique:
    a quote is used at most once, whatever races."""

    __tablename__ = "fx_conversions"
    __table_args__ = (Index("ix_fx_conversions_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    quote_id: Mapped[str] = mapped_column(String(40), ForeignKey("fx_quotes.id"), unique=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    from_transfer_id: Mapped[str] = mapped_column(String(64), ForeignKey("ledger_transfers.id"))
    to_transfer_id: Mapped[str] = mapped_column(String(64), ForeignKey("ledger_transfers.id"))
    locked_carried_minor: Mapped[int] = mapped_column(Amount, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
