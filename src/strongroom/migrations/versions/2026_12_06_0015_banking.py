"""banking: linked bank accounts (R-FUND-2), the user's phone number for P2P by phone (R-P2P-1)
and the verified legal name that KYC approval sets (bank accounts must be in that name)

Revision ID: 2026_12_06_0015
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0015"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LINKED = sa.text("removed_at IS NULL")


def upgrade() -> None:
    # plain ADD COLUMNs: on SQLite a unique constraint would make Alembic rebuild ``users``,
    # which its foreign keys refuse once other tables hold rows (an existing installation);
    # a unique index there does the same job
    op.add_column("users", sa.Column("phone", sa.String(16), nullable=True))
    op.add_column("users", sa.Column("legal_name", sa.String(200), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("uq_users_phone", "users", ["phone"], unique=True)
    else:
        op.create_unique_constraint("uq_users_phone", "users", ["phone"])
    op.create_table(
        "bank_accounts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("holder_name", sa.String(200), nullable=False),
        sa.Column("bank_code", sa.String(12), nullable=False),
        sa.Column("account_number", sa.String(34), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_bank_accounts"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_bank_accounts_user_id_users"),
    )
    op.create_index("ix_bank_accounts_user_id", "bank_accounts", ["user_id"])
    op.create_index(
        "uq_bank_accounts_linked",
        "bank_accounts",
        ["user_id", "bank_code", "account_number"],
        unique=True,
        postgresql_where=LINKED,
        sqlite_where=LINKED,
    )


def downgrade() -> None:
    op.drop_index("uq_bank_accounts_linked", table_name="bank_accounts")
    op.drop_index("ix_bank_accounts_user_id", table_name="bank_accounts")
    op.drop_table("bank_accounts")
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("uq_users_phone", table_name="users")
    with op.batch_alter_table("users") as batch:
        if op.get_bind().dialect.name != "sqlite":
            batch.drop_constraint("uq_users_phone", type_="unique")
        batch.drop_column("legal_name")
        batch.drop_column("phone")
