"""reserves: published proof-of-reserves audits and the reserves recorded against them

Revision ID: 2026_11_22_0003
Revises: 2026_11_22_0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from strongroom.db import Amount

revision = "2026_11_22_0003"
down_revision = "2026_11_22_0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "por_audits",
        sa.Column("audit_id", sa.String(64), nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("assets", sa.JSON(), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("leaf_count", sa.BigInteger(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("tree_dir", sa.String(1024), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name="pk_por_audits"),
        sa.CheckConstraint("leaf_count >= 2", name="ck_por_audits_leaf_count"),
    )
    op.create_index("ix_por_audits_created_at", "por_audits", ["created_at"])
    op.create_table(
        "por_reserves",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("audit_id", sa.String(64), nullable=False),
        sa.Column("asset", sa.String(32), nullable=False),
        sa.Column("amount_minor", Amount(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("evidence_sha256", sa.String(64), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_por_reserves"),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["por_audits.audit_id"], name="fk_por_reserves_audit_id_por_audits"
        ),
        sa.UniqueConstraint(
            "audit_id", "asset", "source", name="uq_por_reserves_audit_asset_source"
        ),
    )
    op.create_index("ix_por_reserves_audit_id", "por_reserves", ["audit_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_check_constraint("amount_non_negative", "por_reserves", "amount_minor >= 0")


def downgrade() -> None:
    op.drop_index("ix_por_reserves_audit_id", table_name="por_reserves")
    op.drop_table("por_reserves")
    op.drop_index("ix_por_audits_created_at", table_name="por_audits")
    op.drop_table("por_audits")
