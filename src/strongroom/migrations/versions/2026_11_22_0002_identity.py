"""identity: lockouts, 2FA, recovery codes, password resets, audit log, email outbox

Revision ID: 2026_11_22_0002
Revises: 2026_11_22_0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_22_0002"
down_revision = "2026_11_22_0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

PG_AUDIT_APPEND_ONLY = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
"""

PG_DROP_AUDIT_TRIGGER = """
DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events;
DROP FUNCTION IF EXISTS audit_events_append_only();
"""

SQLITE_AUDIT_APPEND_ONLY = [
    f"CREATE TRIGGER audit_events_append_only_{verb.lower()} BEFORE {verb} ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: {verb} refused'); END"
    for verb in ("UPDATE", "DELETE")
]


def _user_columns() -> list[sa.Column[object]]:
    # New objects on every run: a Column belongs to one Table, and tests migrate many databases.
    return [
        sa.Column("anti_phishing_code", sa.String(6), nullable=True),
        sa.Column("two_factor_enabled_at", TS, nullable=True),
        sa.Column("withdrawals_frozen_until", TS, nullable=True),
    ]


def upgrade() -> None:
    for column in _user_columns():
        op.add_column("users", column)
    _security_tables()
    _audit_table()
    _outbox_table()


def _security_tables() -> None:
    op.create_table(
        "identity_login_throttle",
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locks", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("email", name="pk_identity_login_throttle"),
    )
    op.create_table(
        "identity_totp",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.Column("last_used_step", BigId, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", TS, nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_identity_totp"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_identity_totp_user_id_users"),
    )
    op.create_table(
        "identity_recovery_codes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_recovery_codes"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_identity_recovery_codes_user_id_users"
        ),
        sa.UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_code"),
    )
    op.create_index("ix_identity_recovery_codes_user_id", "identity_recovery_codes", ["user_id"])
    op.create_table(
        "identity_password_resets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_password_resets"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_identity_password_resets_user_id_users"
        ),
        sa.UniqueConstraint("token_hash", name="uq_identity_password_resets_token_hash"),
    )
    op.create_index("ix_identity_password_resets_user_id", "identity_password_resets", ["user_id"])


def _audit_table() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=True),
        sa.Column("actor_role", sa.String(16), nullable=True),
        sa.Column("subject_user_id", sa.String(32), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.CheckConstraint("category IN ('security', 'operator')", name="ck_audit_events_category"),
    )
    op.create_index("ix_audit_events_subject", "audit_events", ["subject_user_id", "id"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor_id", "id"])
    op.create_index("ix_audit_events_action", "audit_events", ["action", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_AUDIT_APPEND_ONLY)
    else:
        for statement in SQLITE_AUDIT_APPEND_ONLY:
            op.execute(statement)


def _outbox_table() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=True),
        sa.Column("to_address", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", TS, nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mail_outbox"),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_mail_outbox_status"),
        sa.CheckConstraint("attempts >= 0", name="ck_mail_outbox_attempts"),
    )
    op.create_index("ix_mail_outbox_due", "mail_outbox", ["status", "available_at"])
    op.create_index("ix_mail_outbox_user", "mail_outbox", ["user_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_mail_outbox_user", table_name="mail_outbox")
    op.drop_index("ix_mail_outbox_due", table_name="mail_outbox")
    op.drop_table("mail_outbox")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DROP_AUDIT_TRIGGER)
    op.drop_table("audit_events")
    op.drop_table("identity_password_resets")
    op.drop_table("identity_recovery_codes")
    op.drop_table("identity_totp")
    op.drop_table("identity_login_throttle")
    with op.batch_alter_table("users") as batch:
        for column in reversed(_user_columns()):
            batch.drop_column(column.name)
