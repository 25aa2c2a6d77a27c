"""foundation: ledger, users, tokens, idempotency keys

Revision ID: 2026_11_22_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from strongroom.db import Amount

revision = "2026_11_22_0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

# PostgreSQL enforces what it can (STYLE: let the database enforce). SQLite stores amounts as
# text, so these numeric checks exist only on PostgreSQL; the service enforces them everywhere.
PG_CHECKS = {
    "ledger_accounts": {
        "fields_non_negative": "debits_posted >= 0 AND credits_posted >= 0 AND "
        "debits_pending >= 0 AND credits_pending >= 0 AND negative_limit_minor >= 0",
        "within_floor": "allow_negative OR credits_posted - debits_posted - debits_pending "
        ">= -negative_limit_minor",
    },
    "ledger_transfers": {
        "amount_positive": f"amount_minor > 0 AND amount_minor <= {2**128 - 1}",
        "distinct_accounts": "debit_account_id <> credit_account_id",
        "kind": "kind IN ('posted', 'pending', 'post_pending', 'void_pending')",
        "pending_link": "(pending_id IS NULL) = (kind IN ('posted', 'pending'))",
        "timeout_only_pending": "timeout_at IS NULL OR kind = 'pending'",
    },
    "ledger_entries": {
        "posted_non_negative": "posted_minor >= 0",
        "moves_something": "posted_minor <> 0 OR pending_minor <> 0",
    },
}

BALANCED_TRIGGER = """
CREATE FUNCTION ledger_transfer_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT asset,
           sum(CASE side WHEN 'D' THEN posted_minor ELSE -posted_minor END) AS posted,
           sum(CASE side WHEN 'D' THEN pending_minor ELSE -pending_minor END) AS pending
      INTO unbalanced
      FROM ledger_entries
     WHERE transfer_id = NEW.transfer_id
     GROUP BY asset
    HAVING sum(CASE side WHEN 'D' THEN posted_minor ELSE -posted_minor END) <> 0
        OR sum(CASE side WHEN 'D' THEN pending_minor ELSE -pending_minor END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transfer % does not balance in %', NEW.transfer_id,
            unbalanced.asset USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.side = 'C')
    EXECUTE FUNCTION ledger_transfer_balanced();

CREATE FUNCTION ledger_journal_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: corrections are new reversing transfers', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER ledger_transfers_immutable BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_immutable();
CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_immutable();
"""

SQLITE_IMMUTABLE = [
    f"CREATE TRIGGER {table}_immutable_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
    f"SELECT RAISE(ABORT, '{table} is append-only: corrections are new reversing transfers'); END"
    for table in ("ledger_transfers", "ledger_entries")
    for verb in ("UPDATE", "DELETE")
]

DROP_TRIGGER = """
DROP TRIGGER IF EXISTS ledger_entries_immutable ON ledger_entries;
DROP TRIGGER IF EXISTS ledger_transfers_immutable ON ledger_transfers;
DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries;
DROP FUNCTION IF EXISTS ledger_journal_immutable();
DROP FUNCTION IF EXISTS ledger_transfer_balanced();
"""


def upgrade() -> None:
    _identity_tables()
    _ledger_tables()
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(80), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_json", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table, checks in PG_CHECKS.items():
            for name, condition in checks.items():
                op.create_check_constraint(name, table, condition)
        op.execute(BALANCED_TRIGGER)
    else:
        for statement in SQLITE_IMMUTABLE:
            op.execute(statement)


def _identity_tables() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(2), nullable=False),
        sa.Column("kyc_tier", sa.String(16), nullable=False),
        sa.Column("operator_role", sa.String(16), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_tokens"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_auth_tokens_user_id_users"),
        sa.UniqueConstraint("token_hash", name="uq_auth_tokens_token_hash"),
    )
    op.create_index("ix_auth_tokens_user_id", "auth_tokens", ["user_id"])


def _ledger_tables() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("owner_type", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("negative_limit_minor", Amount(), nullable=False),
        sa.Column("debits_posted", Amount(), nullable=False),
        sa.Column("credits_posted", Amount(), nullable=False),
        sa.Column("debits_pending", Amount(), nullable=False),
        sa.Column("credits_pending", Amount(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_accounts"),
        sa.UniqueConstraint(
            "owner_type", "owner_id", "kind", "asset", name="uq_ledger_accounts_owner"
        ),
        sa.UniqueConstraint("id", "asset", name="uq_ledger_accounts_id_asset"),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit_account_id", BigId, nullable=False),
        sa.Column("credit_account_id", BigId, nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", Amount(), nullable=False),
        sa.Column("pending_id", sa.String(64), nullable=True),
        sa.Column("timeout_at", TS, nullable=True),
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("note", sa.String(280), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_transfers"),
        sa.ForeignKeyConstraint(
            ["debit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_transfers_debit_account",
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_transfers_credit_account",
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["ledger_transfers.id"],
            name="fk_ledger_transfers_pending_id_ledger_transfers",
        ),
        sa.UniqueConstraint("pending_id", name="uq_ledger_transfers_pending_id"),
    )
    # Only pending transfers with a timeout are ever looked up by it: a partial index.
    op.create_index(
        "ix_ledger_transfers_open_timeouts",
        "ledger_transfers",
        ["timeout_at"],
        postgresql_where=sa.text("timeout_at IS NOT NULL"),
        sqlite_where=sa.text("timeout_at IS NOT NULL"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("side", sa.String(1), nullable=False),
        sa.Column("posted_minor", Amount(), nullable=False),
        sa.Column("pending_minor", Amount(), nullable=False),
        sa.Column("balance_after", Amount(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.ForeignKeyConstraint(
            ["account_id", "asset"],
            ["ledger_accounts.id", "ledger_accounts.asset"],
            name="fk_ledger_entries_account",
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name="fk_ledger_entries_transfer_id_ledger_transfers",
        ),
        sa.CheckConstraint("side IN ('D', 'C')", name="ck_ledger_entries_side"),
    )
    op.create_index("ix_ledger_entries_account_id_id", "ledger_entries", ["account_id", "id"])
    op.create_index("ix_ledger_entries_transfer_id", "ledger_entries", ["transfer_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_TRIGGER)
    op.drop_table("idempotency_keys")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
    op.drop_index("ix_auth_tokens_user_id", table_name="auth_tokens")
    op.drop_table("auth_tokens")
    op.drop_table("users")
