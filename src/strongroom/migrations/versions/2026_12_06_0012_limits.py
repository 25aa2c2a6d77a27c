"""limits: the journal indexes the limits windows read, and users.nationality

The limits engine (``strongroom.limits``) sums a user's transfers of one code in a rolling day
and year from ``ledger_transfers``: one index per side of the wallet, (account, code,
created_at), so each window is an index range however long the history. ``users.nationality``
(ISO 3166-1 alpha-2, nullable) is for the T+N risk rules (R-TN-1); the KYC approval sets it.

Revision ID: 2026_12_06_0012
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0012"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_transfers_debit_code_created",
        "ledger_transfers",
        ["debit_account_id", "code", "created_at"],
    )
    op.create_index(
        "ix_ledger_transfers_credit_code_created",
        "ledger_transfers",
        ["credit_account_id", "code", "created_at"],
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("nationality", sa.String(2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("nationality")
    op.drop_index("ix_ledger_transfers_credit_code_created", "ledger_transfers")
    op.drop_index("ix_ledger_transfers_debit_code_created", "ledger_transfers")
