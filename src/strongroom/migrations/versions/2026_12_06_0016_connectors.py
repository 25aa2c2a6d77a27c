"""connectors: top-ups that confirm later and the raw webhook deliveries (issue #12, R-FUND-1)

``funding_topups`` is one row per top-up through a connector that confirms later (FPS, card,
cash at a store, the sandbox's failure paths): the user, channel, asset, amount asked and
received, status (requested/confirmed/failed/expired), the connector's reference (unique per
channel) and the ledger transfer that credited it (unique: one credit per top-up).
``funding_webhook_deliveries`` keeps every notification as it arrived, for audit.

Revision ID: 2026_12_06_0016
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0016"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None

AMOUNT = sa.Numeric(39, 0)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATUSES = "status IN ('requested', 'confirmed', 'failed', 'expired')"


def upgrade() -> None:
    op.create_table(
        "funding_topups",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("received_minor", AMOUNT, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("external_reference", sa.String(64), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=True),
        sa.Column("failure_reason", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_funding_topups"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_funding_topups_user_id_users"),
        sa.UniqueConstraint("transfer_id", name="uq_funding_topups_transfer_id"),
        sa.CheckConstraint(STATUSES, name="ck_funding_topups_status"),
        sa.CheckConstraint("amount_minor > 0", name="ck_funding_topups_amount_positive"),
    )
    op.create_index("ix_funding_topups_user", "funding_topups", ["user_id", "created_at"])
    op.create_index(
        "uq_funding_topups_channel_reference",
        "funding_topups",
        ["channel", "external_reference"],
        unique=True,
    )
    op.create_index(
        "ix_funding_topups_open_expiry",
        "funding_topups",
        ["expires_at"],
        postgresql_where=sa.text("status = 'requested'"),
        sqlite_where=sa.text("status = 'requested'"),
    )
    op.create_table(
        "funding_webhook_deliveries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("connector", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remote_address", sa.String(64), nullable=True),
        sa.Column("headers_json", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signature_ok", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("topup_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_funding_webhook_deliveries"),
    )
    op.create_index(
        "ix_funding_webhook_deliveries_connector",
        "funding_webhook_deliveries",
        ["connector", "id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_funding_webhook_deliveries_connector", table_name="funding_webhook_deliveries"
    )
    op.drop_table("funding_webhook_deliveries")
    op.drop_index("ix_funding_topups_open_expiry", table_name="funding_topups")
    op.drop_index("uq_funding_topups_channel_reference", table_name="funding_topups")
    op.drop_index("ix_funding_topups_user", table_name="funding_topups")
    op.drop_table("funding_topups")
