"""gifts: red packets (R-GIFT-1), a gift with its claim code (hashed and sealed) and its
shares, fixed at creation

Revision ID: 2026_12_06_0018
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from strongroom.db import Amount

revision = "2026_12_06_0018"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gifts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("sender_id", sa.String(32), nullable=False),
        sa.Column("region", sa.String(2), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", Amount(), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("claimed_shares", sa.Integer(), nullable=False),
        sa.Column("claimed_minor", Amount(), nullable=False),
        sa.Column("refunded_minor", Amount(), nullable=False),
        sa.Column("claim_code_hash", sa.String(64), nullable=False),
        sa.Column("claim_code_sealed", sa.String(255), nullable=False),
        sa.Column("claim_code_key_id", sa.String(40), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("refund_transfer_id", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gifts"),
        sa.ForeignKeyConstraint(["sender_id"], ["users.id"], name="fk_gifts_sender_id_users"),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["ledger_transfers.id"], name="fk_gifts_transfer_id_ledger_transfers"
        ),
        sa.ForeignKeyConstraint(
            ["refund_transfer_id"],
            ["ledger_transfers.id"],
            name="fk_gifts_refund_transfer_id_ledger_transfers",
        ),
        sa.UniqueConstraint("claim_code_hash", name="uq_gifts_claim_code_hash"),
    )
    op.create_index("ix_gifts_sender_id_id", "gifts", ["sender_id", "id"])
    op.create_index("ix_gifts_status_expires_at", "gifts", ["status", "expires_at"])
    op.create_table(
        "gift_shares",
        sa.Column("gift_id", BIG_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("amount_minor", Amount(), nullable=False),
        sa.Column("claimed_by", sa.String(32), nullable=True),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("transfer_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("gift_id", "position", name="pk_gift_shares"),
        sa.ForeignKeyConstraint(["gift_id"], ["gifts.id"], name="fk_gift_shares_gift_id_gifts"),
        sa.ForeignKeyConstraint(
            ["claimed_by"], ["users.id"], name="fk_gift_shares_claimed_by_users"
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name="fk_gift_shares_transfer_id_ledger_transfers",
        ),
        sa.UniqueConstraint("gift_id", "claimed_by", name="uq_gift_shares_gift_id_claimed_by"),
    )


def downgrade() -> None:
    op.drop_table("gift_shares")
    op.drop_index("ix_gifts_status_expires_at", table_name="gifts")
    op.drop_index("ix_gifts_sender_id_id", table_name="gifts")
    op.drop_table("gifts")
