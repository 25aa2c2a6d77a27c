"""purchases: crypto bought with fiat at a quote through a top-up channel (issue #12)

``funding_purchases`` is one row per purchase: the user, the top-up that carries its payment
(unique), the FX quote it was priced at (unique: a quote buys once), what is bought and what is
paid, how long the price is held, and once the payment is confirmed, the two ledger legs (or
none: ``outcome`` ``fiat_credited`` when the payment came too late or not for the quoted
amount, and was credited as a plain top-up).

Revision ID: 2026_12_06_0036
Revises: 2026_12_06_0030
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0036"
down_revision = "2026_12_06_0030"
branch_labels = None
depends_on = None

AMOUNT = sa.Numeric(39, 0)
TABLE = "funding_purchases"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("topup_id", sa.String(32), nullable=False),
        sa.Column("quote_id", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount_minor", AMOUNT, nullable=False),
        sa.Column("pay_asset", sa.String(10), nullable=False),
        sa.Column("pay_minor", AMOUNT, nullable=False),
        sa.Column("rate", sa.String(64), nullable=False),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lock_s", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("pay_transfer_id", sa.String(64), nullable=True),
        sa.Column("credit_transfer_id", sa.String(64), nullable=True),
        sa.Column("unlocks_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_funding_purchases"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_funding_purchases_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["topup_id"], ["funding_topups.id"], name="fk_funding_purchases_topup_id_funding_topups"
        ),
        sa.ForeignKeyConstraint(
            ["quote_id"], ["fx_quotes.id"], name="fk_funding_purchases_quote_id_fx_quotes"
        ),
        sa.UniqueConstraint("topup_id", name="uq_funding_purchases_topup_id"),
        sa.UniqueConstraint("quote_id", name="uq_funding_purchases_quote_id"),
        sa.UniqueConstraint("pay_transfer_id", name="uq_funding_purchases_pay_transfer_id"),
        sa.UniqueConstraint("credit_transfer_id", name="uq_funding_purchases_credit_transfer_id"),
        sa.CheckConstraint(
            "amount_minor > 0 AND pay_minor > 0", name="ck_funding_purchases_amounts_positive"
        ),
        sa.CheckConstraint("asset <> pay_asset", name="ck_funding_purchases_distinct_assets"),
    )
    op.create_index("ix_funding_purchases_user", TABLE, ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_funding_purchases_user", table_name=TABLE)
    op.drop_table(TABLE)
