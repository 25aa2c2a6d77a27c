"""withdrawals: withdrawals with their payout attempt (R-FUND-2, R-FUND-3), the crypto address
book (whitelist) and the user's withdrawal preferences

Revision ID: 2026_12_06_0021
Revises: 2026_12_06_0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0021"
down_revision = "2026_12_06_0020"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
AMOUNT = sa.Numeric(39, 0)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = sa.text("removed_at IS NULL")
OPEN = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "withdrawal_addresses",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("label", sa.String(60), nullable=True),
        sa.Column("whitelisted", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawal_addresses"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_withdrawal_addresses_user_id_users"
        ),
    )
    op.create_index("ix_withdrawal_addresses_user_id", "withdrawal_addresses", ["user_id"])
    op.create_index(
        "uq_withdrawal_addresses_live",
        "withdrawal_addresses",
        ["user_id", "asset", "address"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_table(
        "withdrawal_preferences",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("whitelist_only", sa.Boolean(), nullable=False),
        sa.Column("quick_limit", sa.String(40), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_withdrawal_preferences"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_withdrawal_preferences_user_id_users"
        ),
    )
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("bank_account_id", BIG_ID, nullable=True),
        sa.Column("address_id", BIG_ID, nullable=True),
        sa.Column("destination", sa.String(140), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payout_state", sa.String(16), nullable=False),
        sa.Column("connector", sa.String(32), nullable=False),
        sa.Column("payout_reference", sa.String(64), nullable=True),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawals"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_withdrawals_user_id_users"),
        sa.ForeignKeyConstraint(
            ["bank_account_id"],
            ["bank_accounts.id"],
            name="fk_withdrawals_bank_account_id_bank_accounts",
        ),
        sa.ForeignKeyConstraint(
            ["address_id"],
            ["withdrawal_addresses.id"],
            name="fk_withdrawals_address_id_withdrawal_addresses",
        ),
        sa.UniqueConstraint("transfer_id", name="uq_withdrawals_transfer_id"),
        sa.CheckConstraint("amount_minor > 0", name="ck_withdrawals_amount_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'failed')", name="ck_withdrawals_status"
        ),
        sa.CheckConstraint(
            "payout_state IN ('queued', 'sent', 'paid', 'failed')",
            name="ck_withdrawals_payout_state",
        ),
    )
    op.create_index("ix_withdrawals_user", "withdrawals", ["user_id", "created_at"])
    op.create_index(
        "ix_withdrawals_open",
        "withdrawals",
        ["created_at"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_withdrawals_open", table_name="withdrawals")
    op.drop_index("ix_withdrawals_user", table_name="withdrawals")
    op.drop_table("withdrawals")
    op.drop_table("withdrawal_preferences")
    op.drop_index("uq_withdrawal_addresses_live", table_name="withdrawal_addresses")
    op.drop_index("ix_withdrawal_addresses_user_id", table_name="withdrawal_addresses")
    op.drop_table("withdrawal_addresses")
