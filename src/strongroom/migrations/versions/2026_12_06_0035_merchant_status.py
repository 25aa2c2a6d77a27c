"""merchant status: when and why an operator suspended a merchant (issue #13), beside the
``status`` column 0022 made; plain ADD COLUMNs (nullable) so SQLite needs no table rebuild.

Revision ID: 2026_12_06_0035
Revises: 2026_12_06_0030
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0035"
down_revision = "2026_12_06_0030"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("merchants", sa.Column("suspended_at", TS, nullable=True))
    op.add_column("merchants", sa.Column("suspended_reason", sa.String(200), nullable=True))
    op.add_column("merchants", sa.Column("suspended_by", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("suspended_by")
        batch.drop_column("suspended_reason")
        batch.drop_column("suspended_at")
