"""account takeover and leaks (issue #10, part C): sealed TOTP seeds, email verification,
step-up failures, reset requests for unknown emails

- ``identity_totp.secret`` (clear text) becomes ``secret_sealed`` + ``secret_key_id``: every
  existing seed is sealed with the vault key (``strongroom.vault``, R-SEC-11). The keys come
  from the settings (``STRONGROOM_VAULT_KEY``; outside production, a development key derived
  from the secret key) or from ``config.attributes["vault_keyring"]``. Without a key, in
  production, a database with seeds refuses to migrate. The downgrade opens them again.
- ``users.email_verified_at``: accounts that exist now registered before verification existed
  and are marked verified at their creation time; new ones verify by the emailed link.
- ``identity_email_verifications``: the emailed tokens (SHA-256 only), one address each.
- ``identity_step_up_failures``: wrong passwords at a step-up (R-SEC-8), per session.
- ``identity_password_resets``: an ``email`` column (the hourly limit counts per email string)
  and ``user_id`` may be empty (a request for an email without an account writes a row too).

Revision ID: 2026_12_06_0007
Revises: 2026_12_06_0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

from strongroom import vault

revision = "2026_12_06_0007"
down_revision = "2026_12_06_0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BATCH_ROWS = 500
TOTP = sa.table(
    "identity_totp",
    sa.column("user_id", sa.String),
    sa.column("secret", sa.String),
    sa.column("secret_sealed", sa.String),
    sa.column("secret_key_id", sa.String),
)


def secret_context(user_id: str) -> str:
    """Where a TOTP seed is stored: the associated data it is sealed with (as
    ``identity.two_factor`` seals it)."""
    return f"identity_totp.secret:{user_id}"


def _keyring() -> vault.Keyring:
    given = context.config.attributes.get("vault_keyring")
    if isinstance(given, vault.Keyring):
        return given
    from strongroom.settings import get_settings

    return get_settings().auth.vault


def upgrade() -> None:
    _seal_totp_secrets()
    op.add_column("users", sa.Column("email_verified_at", TS, nullable=True))
    op.execute("UPDATE users SET email_verified_at = created_at")
    _verification_table()
    _step_up_table()
    _reset_requests_by_email()


def downgrade() -> None:
    op.execute("DELETE FROM identity_password_resets WHERE user_id IS NULL")
    op.drop_index("ix_identity_password_resets_email", table_name="identity_password_resets")
    with op.batch_alter_table("identity_password_resets") as batch:
        batch.drop_column("email")
        batch.alter_column("user_id", existing_type=sa.String(32), nullable=False)
    op.drop_table("identity_step_up_failures")
    op.drop_index(
        "ix_identity_email_verifications_user_id", table_name="identity_email_verifications"
    )
    op.drop_table("identity_email_verifications")
    # a plain column: dropped in place (SQLite 3.35+), not by copying users, which rows refer to
    op.execute("ALTER TABLE users DROP COLUMN email_verified_at")
    _open_totp_secrets()


def _rows(connection: Any, columns: list[str], after: str) -> list[Any]:
    """The next ``BATCH_ROWS`` rows by user id after ``after``: a bounded batch at a time."""
    return list(
        connection.execute(
            sa.select(TOTP.c.user_id, *(TOTP.c[name] for name in columns))
            .where(TOTP.c.user_id > after)
            .order_by(TOTP.c.user_id)
            .limit(BATCH_ROWS)
        )
    )


def _seal_totp_secrets() -> None:
    with op.batch_alter_table("identity_totp") as batch:
        batch.add_column(sa.Column("secret_sealed", sa.String(255), nullable=True))
        batch.add_column(sa.Column("secret_key_id", sa.String(16), nullable=True))
    connection = op.get_bind()
    keyring: vault.Keyring | None = None
    after = ""
    while rows := _rows(connection, ["secret"], after):
        keyring = keyring or _keyring()
        for user_id, secret in rows:
            sealed = keyring.seal(secret, context=secret_context(user_id))
            connection.execute(
                TOTP.update()
                .where(TOTP.c.user_id == user_id)
                .values(secret_sealed=sealed.ciphertext, secret_key_id=sealed.key_id)
            )
        after = rows[-1][0]
    with op.batch_alter_table("identity_totp") as batch:
        batch.alter_column("secret_sealed", existing_type=sa.String(255), nullable=False)
        batch.alter_column("secret_key_id", existing_type=sa.String(16), nullable=False)
        batch.drop_column("secret")


def _open_totp_secrets() -> None:
    with op.batch_alter_table("identity_totp") as batch:
        batch.add_column(sa.Column("secret", sa.String(64), nullable=True))
    connection = op.get_bind()
    keyring: vault.Keyring | None = None
    after = ""
    while rows := _rows(connection, ["secret_sealed", "secret_key_id"], after):
        keyring = keyring or _keyring()
        for user_id, sealed, key_id in rows:
            secret = keyring.open(
                vault.Sealed(key_id=key_id, ciphertext=sealed), context=secret_context(user_id)
            )
            connection.execute(TOTP.update().where(TOTP.c.user_id == user_id).values(secret=secret))
        after = rows[-1][0]
    with op.batch_alter_table("identity_totp") as batch:
        batch.alter_column("secret", existing_type=sa.String(64), nullable=False)
        batch.drop_column("secret_key_id")
        batch.drop_column("secret_sealed")


def _verification_table() -> None:
    op.create_table(
        "identity_email_verifications",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_email_verifications"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_identity_email_verifications_user_id_users"
        ),
        sa.UniqueConstraint("token_hash", name="uq_identity_email_verifications_token_hash"),
    )
    op.create_index(
        "ix_identity_email_verifications_user_id", "identity_email_verifications", ["user_id"]
    )


def _step_up_table() -> None:
    op.create_table(
        "identity_step_up_failures",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_identity_step_up_failures"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_tokens.id"],
            name="fk_identity_step_up_failures_session_id_auth_tokens",
        ),
    )


def _reset_requests_by_email() -> None:
    with op.batch_alter_table("identity_password_resets") as batch:
        batch.add_column(sa.Column("email", sa.String(254), nullable=True))
    op.execute(
        "UPDATE identity_password_resets SET email = "
        "(SELECT users.email FROM users WHERE users.id = identity_password_resets.user_id)"
    )
    with op.batch_alter_table("identity_password_resets") as batch:
        batch.alter_column("email", existing_type=sa.String(254), nullable=False)
        batch.alter_column("user_id", existing_type=sa.String(32), nullable=True)
    op.create_index("ix_identity_password_resets_email", "identity_password_resets", ["email"])
