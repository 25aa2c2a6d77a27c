"""throughput: the double-entry check once per transfer, and one index fewer per entry

PostgreSQL only. Migration 0004's deferred double-entry trigger fired for every transfer AND for
both of its entries, running the same check three times per transfer at commit. The check on the
transfer alone is enough: a transfer commits only with exactly one debit and one credit entry
carrying its asset, accounts and amounts (the transfer's trigger), an entry always names an
existing transfer (foreign key), and a transfer that has committed takes no further entry (the
unique key on (transfer_id, side) with side in ('D', 'C'): both sides are taken). So the trigger
on ledger_entries is dropped. So is the plain index on ledger_entries.transfer_id from 0001: the
unique index on (transfer_id, side) serves every lookup by transfer id, and each entry paid for
both.

Also on PostgreSQL, the foreign key from an entry to its account goes: the transfer's trigger
checks at commit that each entry carries the transfer's asset and, for its side, the transfer's
debit or credit account, and the transfer's own foreign keys make those (account, asset) pairs
exist; the entry's key checked the same pair again (two lookups per transfer, about 0.1 s of
PostgreSQL CPU per 8,000-transfer batch). SQLite keeps it (its entries are checked as they are
written, not at commit).

Revision ID: 2026_12_06_0017
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "2026_12_06_0017"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None

ENTRY_ACCOUNT_KEY = "fk_ledger_entries_account"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_entries_double_entry ON ledger_entries")
        op.drop_constraint(ENTRY_ACCOUNT_KEY, "ledger_entries", type_="foreignkey")
    op.drop_index("ix_ledger_entries_transfer_id", table_name="ledger_entries")


def downgrade() -> None:
    op.create_index("ix_ledger_entries_transfer_id", "ledger_entries", ["transfer_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(
            ENTRY_ACCOUNT_KEY,
            "ledger_entries",
            "ledger_accounts",
            ["account_id", "asset"],
            ["id", "asset"],
        )
        op.execute(
            "CREATE CONSTRAINT TRIGGER ledger_entries_double_entry"
            " AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW EXECUTE FUNCTION ledger_transfer_double_entry()"
        )
