"""rate limits: one bucket per rule and key, shared by every server process (R-SEC-9)

``rate_limit_buckets`` holds, per rule (``login_per_address``, ...) and key (the SHA-256 of an
address or an email), the end of the key's current window (milliseconds since the Unix epoch)
and how many requests it counted; an index on the window's end lets the worker delete ended
windows in bounded batches. Counts are never negative.

Revision ID: 2026_12_06_0008
Revises: 2026_12_06_0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0008"
down_revision = "2026_12_06_0005"
branch_labels = None
depends_on = None

CHECKS = {"hits_not_negative": "hits >= 0"}


def upgrade() -> None:
    op.create_table(
        "rate_limit_buckets",
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("window_end_ms", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "key_digest", name="pk_rate_limit_buckets"),
    )
    op.create_index("ix_rate_limit_buckets_window_end_ms", "rate_limit_buckets", ["window_end_ms"])
    if op.get_bind().dialect.name == "postgresql":
        for name, condition in CHECKS.items():
            op.create_check_constraint(name, "rate_limit_buckets", condition)
    else:
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER rate_limit_buckets_hits_not_negative_{event.lower()} "
                f"BEFORE {event} ON rate_limit_buckets WHEN NEW.hits < 0 "
                "BEGIN SELECT RAISE(ABORT, 'rate_limit_buckets.hits must not be negative'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS rate_limit_buckets_hits_not_negative_{event}")
    op.drop_index("ix_rate_limit_buckets_window_end_ms", table_name="rate_limit_buckets")
    op.drop_table("rate_limit_buckets")
