"""wiring: spent locked money consumes its lots (T+N, R-TN-2)

A debit that uses locked money (a conversion, a merchant payment, an operator adjustment) now
consumes the lots it used in its own transaction, earliest unlock first:
``ledger_locks.consumed_minor`` (what of the lot is spent; a lot counts ``amount_minor -
consumed_minor``) and ``ledger_lock_uses`` (one row per lot a transfer used, so a conversion can
carry exactly what its debit consumed). ``ledger_accounts.locks_until`` is the latest unlock time
of any lot ever written on the account: the ledger reads it with the account lock it takes
anyway, so only debits of accounts with live lots read their lots.

Revision ID: 2026_12_06_0023
Revises: 2026_12_06_0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from strongroom.db import Amount

revision = "2026_12_06_0023"
down_revision = "2026_12_06_0020"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("ledger_accounts") as batch:
        batch.add_column(sa.Column("locks_until", TS, nullable=True))
    op.execute(
        "UPDATE ledger_accounts SET locks_until = (SELECT max(l.unlocks_at) FROM ledger_locks l"
        " WHERE l.account_id = ledger_accounts.id)"
        " WHERE id IN (SELECT account_id FROM ledger_locks)"
    )
    with op.batch_alter_table("ledger_locks") as batch:
        batch.add_column(
            sa.Column("consumed_minor", Amount(), nullable=False, server_default=sa.text("0"))
        )
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps amounts as text (db.Amount)
        op.create_check_constraint(
            "consumed_in_range",
            "ledger_locks",
            "consumed_minor >= 0 AND consumed_minor <= amount_minor",
        )
    op.create_table(
        "ledger_lock_uses",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("lock_id", BigId, nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", Amount(), nullable=False),
        sa.Column("unlocks_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_lock_uses"),
        sa.ForeignKeyConstraint(
            ["lock_id"], ["ledger_locks.id"], name="fk_ledger_lock_uses_lock_id_ledger_locks"
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name="fk_ledger_lock_uses_transfer_id_ledger_transfers",
        ),
    )
    op.create_index("ix_ledger_lock_uses_transfer_id", "ledger_lock_uses", ["transfer_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_lock_uses_transfer_id", table_name="ledger_lock_uses")
    op.drop_table("ledger_lock_uses")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("consumed_in_range", "ledger_locks", type_="check")
    with op.batch_alter_table("ledger_locks") as batch:
        batch.drop_column("consumed_minor")
    with op.batch_alter_table("ledger_accounts") as batch:
        batch.drop_column("locks_until")
