"""payment codes and virtual card numbers: payment-code devices (their secrets sealed), the
codes accepted (one row per device and time step), virtual cards (numbers sealed, found by an
HMAC digest)

Revision ID: 2026_12_06_0014
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0014"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "paycode_devices",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("locator", sa.Integer(), nullable=False),
        sa.Column("secret_sealed", sa.String(255), nullable=False),
        sa.Column("secret_key_id", sa.String(16), nullable=False),
        sa.Column("server_held", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_paycode_devices"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_paycode_devices_user_id_users"),
        sa.UniqueConstraint("locator", name="uq_paycode_devices_locator"),
    )
    op.create_index("ix_paycode_devices_user_id", "paycode_devices", ["user_id"])
    op.create_table(
        "paycode_uses",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("step", BIG, nullable=False),
        sa.Column("used_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "step", name="pk_paycode_uses"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["paycode_devices.id"], name="fk_paycode_uses_device_id_paycode_devices"
        ),
    )
    op.create_table(
        "virtual_cards",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("number_sealed", sa.String(255), nullable=False),
        sa.Column("number_key_id", sa.String(16), nullable=False),
        sa.Column("number_digest", sa.String(64), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("merchant_id", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("status_changed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_virtual_cards"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_virtual_cards_user_id_users"),
        sa.UniqueConstraint("number_digest", name="uq_virtual_cards_number_digest"),
        sa.CheckConstraint(
            "status IN ('active', 'suspended', 'deleted')", name="ck_virtual_cards_status"
        ),
    )
    op.create_index("ix_virtual_cards_user_id", "virtual_cards", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_virtual_cards_user_id", table_name="virtual_cards")
    op.drop_table("virtual_cards")
    op.drop_table("paycode_uses")
    op.drop_index("ix_paycode_devices_user_id", table_name="paycode_devices")
    op.drop_table("paycode_devices")
