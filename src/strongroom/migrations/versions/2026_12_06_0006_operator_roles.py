"""operator roles: service keys, maker-checker adjustments, no user account may go negative

``api_keys`` holds the service keys (R-SEC-10): the SHA-256 of each key, never the key; a scope
and an owner (``platform`` today, merchants' terminal keys later); a live name is unique per
owner. ``ledger_adjustments`` holds the manual transfers one operator proposes and another
approves; the database refuses an approval by the proposer. ``ledger_accounts`` gets the rule
that a user's account never goes negative (``allow_negative`` false, no negative limit): on
PostgreSQL a CHECK ``NOT VALID`` (new and changed rows; rows written before are left for
``strongroom ledger check`` and a person to look at, so the upgrade cannot fail on them), on
SQLite triggers on insert and update.

Revision ID: 2026_12_06_0006
Revises: 2026_12_06_0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from strongroom.db import Amount

revision = "2026_12_06_0006"
down_revision = "2026_12_06_0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
LIVE = sa.text("revoked_at IS NULL")

USER_NEVER_NEGATIVE = "ck_ledger_accounts_user_never_negative"
PG_USER_NEVER_NEGATIVE = (
    f"ALTER TABLE ledger_accounts ADD CONSTRAINT {USER_NEVER_NEGATIVE} CHECK "
    "(owner_type <> 'user' OR (NOT allow_negative AND negative_limit_minor = 0)) NOT VALID"
)
SQLITE_USER_NEVER_NEGATIVE = [
    f"CREATE TRIGGER ledger_accounts_user_never_negative_{verb.lower()} BEFORE {verb} "
    "ON ledger_accounts WHEN NEW.owner_type = 'user' "
    "AND (NEW.allow_negative OR NEW.negative_limit_minor <> '0') "
    f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {USER_NEVER_NEGATIVE}'); END"
    for verb in ("INSERT", "UPDATE")
]
SQLITE_AMOUNT_POSITIVE = (
    "CREATE TRIGGER ledger_adjustments_amount_positive BEFORE INSERT ON ledger_adjustments "
    "WHEN NEW.amount_minor NOT GLOB '[1-9]*' OR NEW.amount_minor GLOB '*[^0-9]*' "
    "BEGIN SELECT RAISE(ABORT, 'ledger_adjustments.amount_minor must be positive'); END"
)


def upgrade() -> None:
    _api_keys()
    _adjustments()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_USER_NEVER_NEGATIVE)
        op.create_check_constraint("amount_positive", "ledger_adjustments", "amount_minor > 0")
    else:
        for statement in [*SQLITE_USER_NEVER_NEGATIVE, SQLITE_AMOUNT_POSITIVE]:
            op.execute(statement)


def _api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("owner_type", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["owner_type", "owner_id", "name"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )


def _adjustments() -> None:
    op.create_table(
        "ledger_adjustments",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("debit_account_id", BigId, nullable=False),
        sa.Column("credit_account_id", BigId, nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", Amount(), nullable=False),
        sa.Column("reason", sa.String(280), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proposed_by", sa.String(32), nullable=False),
        sa.Column("proposed_at", TS, nullable=False),
        sa.Column("request_key", sa.String(128), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("decided_by", sa.String(32), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decision_note", sa.String(280), nullable=True),
        sa.Column("transfer_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_adjustments"),
        sa.ForeignKeyConstraint(
            ["debit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_adjustments_debit_account",
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_adjustments_credit_account",
        ),
        sa.ForeignKeyConstraint(
            ["proposed_by"], ["users.id"], name="fk_ledger_adjustments_proposed_by_users"
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name="fk_ledger_adjustments_decided_by_users"
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name="fk_ledger_adjustments_transfer_id_ledger_transfers",
        ),
        sa.UniqueConstraint("proposed_by", "request_key", name="uq_ledger_adjustments_request_key"),
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id",
            name="distinct_accounts",
        ),
        sa.CheckConstraint("(status = 'pending') = (decided_by IS NULL)", name="decided"),
        sa.CheckConstraint(
            "status <> 'approved' OR (decided_by <> proposed_by AND transfer_id IS NOT NULL)",
            name="maker_checker",
        ),
    )
    op.create_index("ix_ledger_adjustments_status_id", "ledger_adjustments", ["status", "id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE ledger_accounts DROP CONSTRAINT IF EXISTS {USER_NEVER_NEGATIVE}")
    else:
        for verb in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS ledger_accounts_user_never_negative_{verb}")
        op.execute("DROP TRIGGER IF EXISTS ledger_adjustments_amount_positive")
    op.drop_index("ix_ledger_adjustments_status_id", table_name="ledger_adjustments")
    op.drop_table("ledger_adjustments")
    op.drop_index("uq_api_keys_live_name", table_name="api_keys")
    op.drop_table("api_keys")
