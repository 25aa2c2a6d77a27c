"""Funding tables: one row per top-up through a connector that confirms later (R-FUND-1), and
every webhook delivery as it arrived (stored raw, for audit).

A top-up's credit is the ledger transfer ``topup:<top-up id>`` (``transfer_id``, unique): a
second confirmation finds it there and moves nothing (``strongroom ledger reconcile`` checks
both sides)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class Topup(Base):
    __tablename__ = "funding_topups"
    __table_args__ = (
        Index("ix_funding_topups_user", "user_id", "created_at"),
        Index("uq_funding_topups_channel_reference", "channel", "external_reference", unique=True),
        Index(
            "ix_funding_topups_open_expiry",
            "expires_at",
            postgresql_where=text("status = 'requested'"),
            sqlite_where=text("status = 'requested'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(32))
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    # what the connector says arrived (credited), which may differ from what was asked for
    received_minor: Mapped[int | None] = mapped_column(Amount, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # requested/confirmed/failed/expired
    external_reference: Mapped[str] = mapped_column(String(64))
    transfer_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """A connector's notification as it arrived, signature checked or not, and what came of it
    (``outcome``: credited, duplicate, ignored, refused, invalid_signature, ...)."""

    __tablename__ = "funding_webhook_deliveries"
    __table_args__ = (Index("ix_funding_webhook_deliveries_connector", "connector", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connector: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    remote_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    headers_json: Mapped[str] = mapped_column(Text, default="{}")
    body: Mapped[str] = mapped_column(Text, default="")
    signature_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(40))
    topup_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Purchase(Base):
    """A purchase of a crypto asset paid in fiat at a quote (issue #12, ``funding.purchases``).

    The payment is the top-up ``topup_id`` (its channel, reference, status and webhooks); this
    row holds the price the user accepted: ``pay_minor`` of ``pay_asset`` for ``amount_minor``
    of ``asset``, held until ``held_until``. Once the payment is confirmed it names the two
    linked ledger legs (``purchase:<id>.pay``: bank omnibus -> FX account in the paid asset;
    ``purchase:<id>.credit``: FX account in the bought asset -> the user's wallet, T+N locked)
    or, when the payment came too late or not for the quoted amount, neither (the money was
    credited as a plain top-up in the paid asset, ``outcome`` ``fiat_credited``)."""

    __tablename__ = "funding_purchases"
    __table_args__ = (
        Index("ix_funding_purchases_user", "user_id", "created_at"),
        CheckConstraint("amount_minor > 0 AND pay_minor > 0", name="amounts_positive"),
        CheckConstraint("asset <> pay_asset", name="distinct_assets"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    topup_id: Mapped[str] = mapped_column(String(32), ForeignKey("funding_topups.id"), unique=True)
    quote_id: Mapped[str] = mapped_column(String(40), ForeignKey("fx_quotes.id"), unique=True)
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    pay_asset: Mapped[str] = mapped_column(String(10))
    pay_minor: Mapped[int] = mapped_column(Amount)
    rate: Mapped[str] = mapped_column(String(64))  # shown: asset per pay_asset, major units
    held_until: Mapped[datetime] = mapped_column(UTCDateTime)
    # the T+N lock (R-TN-1) decided when the user bought (their tier and nationality then)
    lock_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # bought/fiat_credited
    pay_transfer_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    credit_transfer_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    unlocks_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
