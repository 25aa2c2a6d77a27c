"""bank code width: ``merchants.settlement_bank_code`` and ``merchant_payout_rows.bank_code``
were VARCHAR(8), but ``banking.check_details`` accepts bank codes of up to
``BankingSettings.bank_code_max_digits`` digits (at most 12: a mainland China CNAPS code), so on
PostgreSQL onboarding such a merchant or paying such a CSV row failed with a database error.
Both become VARCHAR(12), the width ``bank_accounts.bank_code`` already has (withdrawals and
payouts store no bank code of their own: they point at a bank account or a payout row). The same
way ``merchants.settlement_holder_name`` was VARCHAR(140) while the onboarding API and
``banking.check_details`` accept holder names of up to 200 characters (``bank_accounts`` holds
200): it becomes VARCHAR(200).

SQLite does not enforce VARCHAR lengths, so nothing failed there and this migration leaves
SQLite alone (both directions): changing a declared type there means rebuilding the table,
and rebuilding ``merchants`` drops a table that other rows reference, which fails with
``FOREIGN KEY constraint failed`` (foreign keys are on, and cannot be switched off inside the
migration's transaction). The declared VARCHAR(8) left on SQLite stores 12 digits as they are.

Downgrade (PostgreSQL) narrows back only when no stored value is longer; otherwise it refuses,
naming the columns and how many rows, since narrowing would cut a code or a name.

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

COLUMNS = (  # (table, column, width before, width after)
    ("merchants", "settlement_bank_code", 8, 12),
    ("merchant_payout_rows", "bank_code", 8, 12),
    ("merchants", "settlement_holder_name", 140, 200),
)


def _alter(*, widen: bool) -> None:
    for table, column, old, new in COLUMNS:
        op.alter_column(  # PostgreSQL only (see above): ALTER COLUMN ... TYPE VARCHAR(n)
            table,
            column,
            existing_type=sa.String(old if widen else new),
            type_=sa.String(new if widen else old),
            existing_nullable=False,
        )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    _alter(widen=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return
    too_long = []
    for table, column, old, _new in COLUMNS:
        longer = sa.func.length(sa.column(column)) > old
        count = bind.execute(
            sa.select(sa.func.count()).select_from(sa.table(table)).where(longer)
        ).scalar_one()
        if count:
            too_long.append(f"{table}.{column}: {count} row(s)")
    if too_long:
        raise RuntimeError(
            "cannot narrow the columns back, longer values are stored ("
            + "; ".join(too_long)
            + "); change or remove those rows first"
        )
    _alter(widen=False)
