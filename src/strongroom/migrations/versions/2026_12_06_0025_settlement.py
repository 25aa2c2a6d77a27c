"""settlement: daily merchant settlements and batch payouts (issue #13 item 6; R-MERCH-3)

Revision ID: 2026_12_06_0025
Revises: 2026_12_06_0022
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0025"
down_revision = "2026_12_06_0022"
branch_labels = None
depends_on = None

AMOUNT = sa.Numeric(39, 0)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "merchant_settlements",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("business_day", sa.Date(), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("charges_count", sa.Integer(), nullable=False),
        sa.Column("refunds_count", sa.Integer(), nullable=False),
        sa.Column("charges_minor", AMOUNT, nullable=False),
        sa.Column("refunds_minor", AMOUNT, nullable=False),
        sa.Column("fees_minor", AMOUNT, nullable=False),
        sa.Column("net_minor", AMOUNT, nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("payout_id", sa.String(64), nullable=True),
        sa.Column("connector_reference", sa.String(100), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("paid_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_settlements"),
        sa.UniqueConstraint(
            "merchant_id", "business_day", name="uq_merchant_settlements_merchant_day"
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name="fk_merchant_settlements_merchant_id_merchants"
        ),
        sa.CheckConstraint(
            "status IN ('due', 'processing', 'paid', 'failed', 'nothing_due')",
            name="ck_merchant_settlements_status",
        ),
    )
    op.create_index(
        "ix_merchant_settlements_status_next",
        "merchant_settlements",
        ["status", "next_attempt_at"],
    )
    op.create_table(
        "merchant_payout_batches",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("rows_count", sa.Integer(), nullable=False),
        sa.Column("total_minor", AMOUNT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_payout_batches"),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name="fk_merchant_payout_batches_merchant_id_merchants",
        ),
        sa.CheckConstraint(
            "status IN ('accepted', 'running', 'completed')",
            name="ck_merchant_payout_batches_status",
        ),
    )
    op.create_index(
        "ix_merchant_payout_batches_merchant_id", "merchant_payout_batches", ["merchant_id"]
    )
    op.create_index("ix_merchant_payout_batches_status", "merchant_payout_batches", ["status"])
    op.create_table(
        "merchant_payout_rows",
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(35), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("holder_name", sa.String(140), nullable=False),
        sa.Column("bank_code", sa.String(8), nullable=False),
        sa.Column("account_number", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("payout_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("connector_reference", sa.String(100), nullable=True),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "reference", name="pk_merchant_payout_rows"),
        sa.UniqueConstraint("payout_id", name="uq_merchant_payout_rows_payout_id"),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["merchant_payout_batches.id"],
            name="fk_merchant_payout_rows_batch_id_merchant_payout_batches",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'paid', 'failed')",
            name="ck_merchant_payout_rows_status",
        ),
        sa.CheckConstraint("amount_minor > 0", name="ck_merchant_payout_rows_amount_positive"),
    )


def downgrade() -> None:
    for table in ("merchant_payout_rows", "merchant_payout_batches", "merchant_settlements"):
        op.drop_table(table)
