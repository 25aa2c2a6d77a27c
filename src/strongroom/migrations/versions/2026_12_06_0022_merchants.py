"""merchants: onboarding, terminal keys and roles, charges, refunds, dynamic QR codes and the
webhook outbox (issue #13 items 4, 5, 6-refunds, 8; R-MERCH-1..4, R-XB-1)

Revision ID: 2026_12_06_0022
Revises: 2026_12_06_0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0022"
down_revision = "2026_12_06_0020"
branch_labels = None
depends_on = None

AMOUNT = sa.Numeric(39, 0)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ROLES = "role IN ('owner', 'manager', 'cashier', 'finance')"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("mcc", sa.String(4), nullable=False),
        sa.Column("region", sa.String(2), nullable=False),
        sa.Column("city", sa.String(15), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("discount_rate_bps", sa.Integer(), nullable=False),
        sa.Column("settlement_holder_name", sa.String(140), nullable=False),
        sa.Column("settlement_bank_code", sa.String(8), nullable=False),
        sa.Column("settlement_account_number", sa.String(32), nullable=False),
        sa.Column("webhook_url", sa.String(500), nullable=True),
        sa.Column("webhook_secret_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_merchants"),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="ck_merchants_status"),
    )
    op.create_table(
        "merchant_keys",
        sa.Column("api_key_id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", name="pk_merchant_keys"),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_merchant_keys_api_key_id_api_keys"
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_merchant_keys_merchant_id_merchants"
        ),
        sa.CheckConstraint(ROLES, name="ck_merchant_keys_role"),
    )
    op.create_index("ix_merchant_keys_merchant_id", "merchant_keys", ["merchant_id"])
    op.create_table(
        "merchant_members",
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "user_id", name="pk_merchant_members"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_merchant_members_merchant_id_merchants"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_merchant_members_user_id_users"
        ),
        sa.CheckConstraint(ROLES, name="ck_merchant_members_role"),
    )
    op.create_table(
        "merchant_charges",
        sa.Column("seq", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("payer_user_id", sa.String(32), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("token_last4", sa.String(4), nullable=True),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("fee_minor", AMOUNT, nullable=False),
        sa.Column("payer_asset", sa.String(10), nullable=False),
        sa.Column("payer_amount_minor", AMOUNT, nullable=False),
        sa.Column("fx_rate", sa.String(64), nullable=True),
        sa.Column("refunded_minor", AMOUNT, nullable=False),
        sa.Column("fee_refunded_minor", AMOUNT, nullable=False),
        sa.Column("payer_refunded_minor", AMOUNT, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_merchant_charges"),
        sa.UniqueConstraint("id", name="uq_merchant_charges_id"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_merchant_charges_merchant_id_merchants"
        ),
        sa.ForeignKeyConstraint(
            ["payer_user_id"], ["users.id"], name="fk_merchant_charges_payer_user_id_users"
        ),
        sa.CheckConstraint(
            "status IN ('completed', 'partially_refunded', 'refunded')",
            name="ck_merchant_charges_status",
        ),
        sa.CheckConstraint("amount_minor > 0", name="ck_merchant_charges_amount_positive"),
        sa.CheckConstraint(
            "refunded_minor <= amount_minor", name="ck_merchant_charges_refunds_within_amount"
        ),
    )
    op.create_index(
        "ix_merchant_charges_merchant_created",
        "merchant_charges",
        ["merchant_id", "created_at", "seq"],
    )
    op.create_index("ix_merchant_charges_payer_user_id", "merchant_charges", ["payer_user_id"])
    op.create_table(
        "merchant_refunds",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("charge_id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("fee_minor", AMOUNT, nullable=False),
        sa.Column("payer_amount_minor", AMOUNT, nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_refunds"),
        sa.ForeignKeyConstraint(
            ["charge_id"],
            ["merchant_charges.id"],
            name="fk_merchant_refunds_charge_id_merchant_charges",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_merchant_refunds_merchant_id_merchants"
        ),
        sa.CheckConstraint("amount_minor > 0", name="ck_merchant_refunds_amount_positive"),
    )
    op.create_index("ix_merchant_refunds_charge_id", "merchant_refunds", ["charge_id"])
    op.create_table(
        "merchant_qr_codes",
        sa.Column("id", sa.String(25), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("charge_id", sa.String(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_qr_codes"),
        sa.UniqueConstraint("charge_id", name="uq_merchant_qr_codes_charge_id"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_merchant_qr_codes_merchant_id_merchants"
        ),
    )
    op.create_table(
        "merchant_webhook_events",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_webhook_events"),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name="fk_merchant_webhook_events_merchant_id_merchants",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name="ck_merchant_webhook_events_status",
        ),
    )
    op.create_index(
        "ix_merchant_webhook_events_due", "merchant_webhook_events", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_merchant_webhook_events_merchant_id", "merchant_webhook_events", ["merchant_id"]
    )


def downgrade() -> None:
    for table in (
        "merchant_webhook_events",
        "merchant_qr_codes",
        "merchant_refunds",
        "merchant_charges",
        "merchant_members",
        "merchant_keys",
        "merchants",
    ):
        op.drop_table(table)
