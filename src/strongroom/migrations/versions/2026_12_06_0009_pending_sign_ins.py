"""pending sign-ins: the web's two-step sign-in keeps a right password's wait for its 2FA code
on the server (single use, short-lived, the nonce stored hashed), not the email and password in
a sealed cookie

Revision ID: 2026_12_06_0009
Revises: 2026_12_06_0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0009"
down_revision = "2026_12_06_0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "identity_pending_sign_ins",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("nonce_hash", sa.String(64), nullable=False),
        sa.Column("operators_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("consumed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_pending_sign_ins"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_identity_pending_sign_ins_user_id_users"
        ),
        sa.UniqueConstraint("nonce_hash", name="uq_identity_pending_sign_ins_nonce_hash"),
    )
    op.create_index(
        "ix_identity_pending_sign_ins_user_id", "identity_pending_sign_ins", ["user_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_identity_pending_sign_ins_user_id", table_name="identity_pending_sign_ins")
    op.drop_table("identity_pending_sign_ins")
