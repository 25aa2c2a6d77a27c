"""payout_resend: a withdrawal's payout may be ``resend`` (the connector answered "unknown
reference": sent again under the same payout id) or ``stuck`` (still unknown after the most
sends: left pending for an operator); the CHECK on ``withdrawals.payout_state`` admits both.

On SQLite the table is copied from its own CREATE statement (see ``_check``); nothing refers
to ``withdrawals``, so the copy is allowed.

Revision ID: 2026_12_06_0037
Revises: 2026_12_06_0030
Create Date: 2026-12-06
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0037"
down_revision = "2026_12_06_0030"
branch_labels = None
depends_on = None

NAME = "ck_withdrawals_ck_withdrawals_payout_state"
"""The name 0021 gave it (its ``ck_withdrawals_payout_state`` went through the naming
convention once more)."""
BEFORE = "payout_state IN ('queued', 'sent', 'paid', 'failed')"
AFTER = "payout_state IN ('queued', 'sent', 'resend', 'stuck', 'paid', 'failed')"
OPEN = sa.text("status = 'pending'")


def _check(before: str, after: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f(NAME), "withdrawals", type_="check")
        op.create_check_constraint(op.f(NAME), "withdrawals", after)
        return
    # SQLite changes a CHECK only by copying the table (its documented 12 steps). The copy is
    # made from the table's own CREATE statement with the one condition replaced, so every other
    # column, key and CHECK stays exactly as it is (alembic's batch copy renames reflected
    # CHECKs by the naming convention and keeps the old one). Nothing refers to withdrawals.
    connection = op.get_bind()
    create = connection.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'withdrawals'")
    ).scalar_one()
    head = re.match(r'\s*CREATE TABLE\s+"?withdrawals"?\s*\(', create)
    if head is None or create.count(before) != 1:
        raise RuntimeError(f"withdrawals is not as revision 0021 made it: {create}")
    body = create[head.end() :].replace(before, after)
    op.drop_index("ix_withdrawals_open", table_name="withdrawals")
    op.drop_index("ix_withdrawals_user", table_name="withdrawals")
    op.execute("CREATE TABLE withdrawals_copy (" + body)
    op.execute("INSERT INTO withdrawals_copy SELECT * FROM withdrawals")
    op.execute("DROP TABLE withdrawals")
    op.execute("ALTER TABLE withdrawals_copy RENAME TO withdrawals")
    op.create_index("ix_withdrawals_user", "withdrawals", ["user_id", "created_at"])
    op.create_index("ix_withdrawals_open", "withdrawals", ["created_at"], sqlite_where=OPEN)


def upgrade() -> None:
    _check(BEFORE, AFTER)


def downgrade() -> None:
    """Back to the four states: a payout waiting to be sent again is queued (the same thing
    before this revision); a stuck one is ``sent`` (the next sweep asks the connector again)."""
    op.execute("UPDATE withdrawals SET payout_state = 'queued' WHERE payout_state = 'resend'")
    op.execute("UPDATE withdrawals SET payout_state = 'sent' WHERE payout_state = 'stuck'")
    _check(AFTER, BEFORE)
