"""The rate limits' buckets: one row per rule and key, its window and its count."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Base


class RateLimitBucket(Base):
    """How many requests of one key (``key_digest``: SHA-256 of an address or an email, so the
    table holds no address book) a rule has counted in the window that ends at
    ``window_end_ms`` (milliseconds since the Unix epoch, UTC). A window starts at the first
    request after the previous one ended. Rows whose window ended are deleted by the worker."""

    __tablename__ = "rate_limit_buckets"
    __table_args__ = (Index("ix_rate_limit_buckets_window_end_ms", "window_end_ms"),)

    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_end_ms: Mapped[int] = mapped_column(BigInteger)
    hits: Mapped[int] = mapped_column(BigInteger)
