"""fx: operator rates per asset pair, quotes bound to a user, conversions (R-FX-1)

``fx_rates`` holds one row per pair (mid as an exact decimal string, spread in basis points);
``fx_quotes`` the prices offered to users with their exact amounts and expiry; ``fx_conversions``
one row per executed quote (``quote_id`` unique: a quote converts at most once) with its two
linked ledger transfers.

Revision ID: 2026_12_06_0013
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from strongroom.db import Amount

TS = sa.DateTime(timezone=True)

revision = "2026_12_06_0013"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fx_rates",
        sa.Column("base", sa.String(10), nullable=False),
        sa.Column("quote", sa.String(10), nullable=False),
        sa.Column("mid", sa.String(64), nullable=False),
        sa.Column("spread_bps", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("base", "quote", name="pk_fx_rates"),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name="fk_fx_rates_updated_by_users"),
        sa.CheckConstraint("base <> quote", name="ck_fx_rates_distinct_assets"),
        sa.CheckConstraint("spread_bps >= 0 AND spread_bps < 10000", name="ck_fx_rates_spread_bps"),
    )
    op.create_table(
        "fx_quotes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("from_asset", sa.String(10), nullable=False),
        sa.Column("to_asset", sa.String(10), nullable=False),
        sa.Column("from_minor", Amount(), nullable=False),
        sa.Column("to_minor", Amount(), nullable=False),
        sa.Column("rate", sa.String(64), nullable=False),
        sa.Column("to_exact", sa.String(400), nullable=False),
        sa.Column("pair_base", sa.String(10), nullable=False),
        sa.Column("pair_quote", sa.String(10), nullable=False),
        sa.Column("mid", sa.String(64), nullable=False),
        sa.Column("spread_bps", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fx_quotes"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_fx_quotes_user_id_users"),
        sa.CheckConstraint("from_asset <> to_asset", name="ck_fx_quotes_distinct_assets"),
        sa.CheckConstraint("from_minor > 0 AND to_minor > 0", name="ck_fx_quotes_amounts_positive"),
    )
    op.create_index("ix_fx_quotes_user_id_created_at", "fx_quotes", ["user_id", "created_at"])
    op.create_index("ix_fx_quotes_expires_at", "fx_quotes", ["expires_at"])
    op.create_table(
        "fx_conversions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("quote_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("from_transfer_id", sa.String(64), nullable=False),
        sa.Column("to_transfer_id", sa.String(64), nullable=False),
        sa.Column("locked_carried_minor", Amount(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fx_conversions"),
        sa.UniqueConstraint("quote_id", name="uq_fx_conversions_quote_id"),
        sa.ForeignKeyConstraint(
            ["quote_id"], ["fx_quotes.id"], name="fk_fx_conversions_quote_id_fx_quotes"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_fx_conversions_user_id_users"),
        sa.ForeignKeyConstraint(
            ["from_transfer_id"],
            ["ledger_transfers.id"],
            name="fk_fx_conversions_from_transfer_id_ledger_transfers",
        ),
        sa.ForeignKeyConstraint(
            ["to_transfer_id"],
            ["ledger_transfers.id"],
            name="fk_fx_conversions_to_transfer_id_ledger_transfers",
        ),
    )
    op.create_index(
        "ix_fx_conversions_user_id_created_at", "fx_conversions", ["user_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_fx_conversions_user_id_created_at", table_name="fx_conversions")
    op.drop_table("fx_conversions")
    op.drop_index("ix_fx_quotes_expires_at", table_name="fx_quotes")
    op.drop_index("ix_fx_quotes_user_id_created_at", table_name="fx_quotes")
    op.drop_table("fx_quotes")
    op.drop_table("fx_rates")
