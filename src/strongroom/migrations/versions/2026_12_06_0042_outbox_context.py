"""outbox context: ``mail_outbox.context``, the JSON an email's bodies are rendered from when the
delivery worker sends it (issue #14). A P2P transfer's two receipts were rendered (about 0.1 ms
of the server's CPU per transfer, on the ledger's group commit) and stored in full with the
transfer; they are now stored as their subject and this context, and rendered by the mail
worker. A row without a context keeps its bodies as they were written. Nullable: every row
written before stays as it is.

Revision ID: 2026_12_06_0042
Revises: 2026_12_06_0041
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0042"
down_revision = "2026_12_06_0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mail_outbox") as batch:
        batch.add_column(sa.Column("context", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mail_outbox") as batch:
        batch.drop_column("context")
