"""Merchants' tables (R-MERCH-1..4). Amounts are minor units of the asset named beside them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Amount, Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")


class Merchant(Base):
    """An onboarded merchant: its region decides its currency (HK: HKD, CN: CNY); the
    settlement bank account is validated as the banking package validates a user's.
    ``status`` ``suspended`` (by an operator, ``suspended_*`` say when, why and who): its keys
    and people are refused (``merchant_suspended``); its settlements still pay what it earned."""

    __tablename__ = "merchants"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    mcc: Mapped[str] = mapped_column(String(4))
    region: Mapped[str] = mapped_column(String(2))
    city: Mapped[str] = mapped_column(String(15))
    status: Mapped[str] = mapped_column(String(16), default="active")
    discount_rate_bps: Mapped[int] = mapped_column(Integer, default=80)
    settlement_holder_name: Mapped[str] = mapped_column(String(200))
    settlement_bank_code: Mapped[str] = mapped_column(String(12))
    settlement_account_number: Mapped[str] = mapped_column(String(32))
    webhook_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    webhook_secret_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    suspended_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    suspended_by: Mapped[str | None] = mapped_column(String(32), nullable=True)


class MerchantKey(Base):
    """A terminal key's merchant and role (the key itself: ``identity.api_keys.ApiKey`` with
    the ``merchant`` scope, stored hashed)."""

    __tablename__ = "merchant_keys"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'manager', 'cashier', 'finance')", name="role"),
    )

    api_key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))


class MerchantMember(Base):
    """A person who works for a merchant (the portal's sign-in is the user's), with one role."""

    __tablename__ = "merchant_members"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'manager', 'cashier', 'finance')", name="role"),
    )

    merchant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("merchants.id"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Charge(Base):
    """A payment to a merchant. ``amount_minor``/``asset``: what the merchant charged (its
    currency); ``fee_minor``: the discount-rate fee in that currency; ``payer_*``: what left
    the payer's wallet (another currency when cross-border, at ``fx_rate``)."""

    __tablename__ = "merchant_charges"
    __table_args__ = (
        CheckConstraint("status IN ('completed', 'partially_refunded', 'refunded')", name="status"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("refunded_minor <= amount_minor", name="refunds_within_amount"),
        Index("ix_merchant_charges_merchant_created", "merchant_id", "created_at", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.id"))
    payer_user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    token_last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    fee_minor: Mapped[int] = mapped_column(Amount)
    payer_asset: Mapped[str] = mapped_column(String(10))
    payer_amount_minor: Mapped[int] = mapped_column(Amount)
    fx_rate: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refunded_minor: Mapped[int] = mapped_column(Amount, default=0)
    fee_refunded_minor: Mapped[int] = mapped_column(Amount, default=0)
    payer_refunded_minor: Mapped[int] = mapped_column(Amount, default=0)
    status: Mapped[str] = mapped_column(String(24), default="completed")
    transfer_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Refund(Base):
    """A refund of (part of) a charge: ``amount_minor`` back to the payer in the charge's
    currency, ``fee_minor`` of it from the fee account, ``payer_amount_minor`` what the payer's
    wallet received (its own currency)."""

    __tablename__ = "merchant_refunds"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    charge_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("merchant_charges.id"), index=True
    )
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.id"))
    amount_minor: Mapped[int] = mapped_column(Amount)
    fee_minor: Mapped[int] = mapped_column(Amount)
    payer_amount_minor: Mapped[int] = mapped_column(Amount)
    transfer_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DynamicQr(Base):
    """A dynamic merchant-presented code (R-CODE-2): carries its amount, paid at most once."""

    __tablename__ = "merchant_qr_codes"

    id: Mapped[str] = mapped_column(String(25), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.id"))
    asset: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(Amount)
    charge_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(Base):
    """The merchant webhook outbox (R-MERCH-4): written in the transaction of the event,
    delivered by the worker until the merchant answers 2xx (``merchants.webhooks``)."""

    __tablename__ = "merchant_webhook_events"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_merchant_webhook_events_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32), ForeignKey("merchants.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
