"""privacy: erased accounts (issue #11 item 7)

``users.erased_at``: the account was closed and its personal fields replaced by a pseudonym;
``users.purged_at``: after the retention period its financial records' remaining personal
references were deleted (``strongroom privacy purge``). The partial index finds the erased
users the purge still has to visit.

Revision ID: 2026_12_06_0024
Revises: 2026_12_06_0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0024"
down_revision = "2026_12_06_0020"
branch_labels = None
depends_on = None

TO_PURGE = "erased_at IS NOT NULL AND purged_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_users_erased_to_purge",
        "users",
        ["erased_at"],
        postgresql_where=sa.text(TO_PURGE),
        sqlite_where=sa.text(TO_PURGE),
    )


def downgrade() -> None:
    op.drop_index("ix_users_erased_to_purge", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("purged_at")
        batch.drop_column("erased_at")
