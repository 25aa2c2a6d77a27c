"""movements: idempotency keys store an outcome, not an HTTP response; lock lots for balances

The idempotency store belongs to the money-movement service now (``strongroom.movements``): a
key holds the committed outcome ``{"id", "status"}`` (``outcome_json``, the former
``response_json``, whose rows already have that shape) and no HTTP status code; an index on
``created_at`` lets the worker delete expired keys in bounded batches. ``ledger_locks`` holds the
lots of money locked until a time (T+N, R-TN-1) that ``Balance.locked`` and ``unlocks`` report.

Revision ID: 2026_12_06_0005
Revises: 2026_12_06_0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from strongroom.db import Amount

revision = "2026_12_06_0005"
down_revision = "2026_12_06_0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
LOCK_CHECKS = {"amount_positive": "amount_minor > 0"}


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("response_json", new_column_name="outcome_json")
        batch.drop_column("status_code")
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_table(
        "ledger_locks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", Amount(), nullable=False),
        sa.Column("unlocks_at", TS, nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_locks"),
        sa.ForeignKeyConstraint(
            ["account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_locks_account",
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name="fk_ledger_locks_transfer_id_ledger_transfers",
        ),
    )
    op.create_index(
        "ix_ledger_locks_account_id_unlocks_at", "ledger_locks", ["account_id", "unlocks_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        for name, condition in LOCK_CHECKS.items():
            op.create_check_constraint(name, "ledger_locks", condition)
    else:
        op.execute(
            "CREATE TRIGGER ledger_locks_amount_positive BEFORE INSERT ON ledger_locks "
            "WHEN NEW.amount_minor NOT GLOB '[1-9]*' OR NEW.amount_minor GLOB '*[^0-9]*' "
            "BEGIN SELECT RAISE(ABORT, 'ledger_locks.amount_minor must be positive'); END"
        )


def downgrade() -> None:
    op.drop_index("ix_ledger_locks_account_id_unlocks_at", table_name="ledger_locks")
    op.drop_table("ledger_locks")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("outcome_json", new_column_name="response_json")
        batch.add_column(sa.Column("status_code", sa.Integer(), nullable=True))
