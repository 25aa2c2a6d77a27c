"""bank code width: ``merchants.settlement_bank_code`` and ``merchant_payout_rows.bank_code``
were VARCHAR(8), but ``banking.check_details`` accepts bank codes of up to
``BankingSettings.bank_code_max_digits`` digits (at most 12: a mainland China CNAPS code), so on
PostgreSQL onboarding such a merchant or paying such a CSV row failed with a database error.
Both become VARCHAR(12), the width ``bank_accounts.bank_code`` already has (withdrawals and
payouts store no bank code of their own: they point at a bank account or a payout row).

SQLite does not enforce VARCHAR lengths, so nothing failed there and this migration leaves
SQLite alone (both directions): changing a declared type there means rebuilding the table,
and rebuilding ``merchants`` drops a table that other rows reference, which fails with
``FOREIGN KEY constraint failed`` (foreign keys are on, and cannot be switched off inside the
migration's transaction). The declared VARCHAR(8) left on SQLite stores 12 digits as they are.

Downgrade (PostgreSQL) narrows back to VARCHAR(8) only when no stored code is longer;
otherwise it refuses, naming the columns and how many rows, since narrowing would cut a code.

Revision ID: 2026_12_06_0041
Revises: 2026_12_06_0040
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0041"
down_revision = "2026_12_06_0040"
branch_labels = None
depends_on = None

OLD_WIDTH = 8
NEW_WIDTH = 12
COLUMNS = (("merchants", "settlement_bank_code"), ("merchant_payout_rows", "bank_code"))


def _alter(width_from: int, width_to: int) -> None:
    for table, column in COLUMNS:
        op.alter_column(  # PostgreSQL only (see above): ALTER COLUMN ... TYPE VARCHAR(n)
            table,
            column,
            existing_type=sa.String(width_from),
            type_=sa.String(width_to),
            existing_nullable=False,
        )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    _alter(OLD_WIDTH, NEW_WIDTH)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return
    too_long = []
    for table, column in COLUMNS:
        longer = sa.func.length(sa.column(column)) > OLD_WIDTH
        count = bind.execute(
            sa.select(sa.func.count()).select_from(sa.table(table)).where(longer)
        ).scalar_one()
        if count:
            too_long.append(f"{table}.{column}: {count} row(s)")
    if too_long:
        raise RuntimeError(
            f"cannot narrow bank codes back to {OLD_WIDTH} characters, longer codes are stored ("
            + "; ".join(too_long)
            + "); change or remove those rows first"
        )
    _alter(NEW_WIDTH, OLD_WIDTH)
