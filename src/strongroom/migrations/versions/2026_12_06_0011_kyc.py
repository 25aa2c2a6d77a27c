"""kyc: submissions (level, status, the ID details, the review) and their sealed documents

``kyc_submissions``: one row per application for a tier (R-KYC-2..5), at most one pending per
user and level (a partial unique index), oldest-first queue by ``(status, id)``.
``kyc_documents``: what the vault holds for each file (content type, size, the sealing key's id
for rotation, the store's key); the file's bytes are in the document store, never here.

Revision ID: 2026_12_06_0011
Revises: 2026_12_06_0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0011"
down_revision = "2026_12_06_0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kyc_submissions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document_country", sa.String(2), nullable=True),
        sa.Column("document_type", sa.String(32), nullable=True),
        sa.Column("legal_name", sa.String(200), nullable=True),
        sa.Column("document_number", sa.String(64), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("residence_country", sa.String(2), nullable=True),
        sa.Column("based_on_id", BigId, nullable=True),
        sa.Column("reason", sa.String(280), nullable=True),
        sa.Column("reviewer_id", sa.String(32), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_kyc_submissions_user_id_users"),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name="fk_kyc_submissions_reviewer_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["based_on_id"],
            ["kyc_submissions.id"],
            name="fk_kyc_submissions_based_on_id_kyc_submissions",
        ),
        sa.CheckConstraint(
            "level IN ('primary', 'advanced', 'institutional')", name="ck_kyc_submissions_level"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name="ck_kyc_submissions_status"
        ),
        sa.CheckConstraint(
            "(status = 'pending') = (reviewed_at IS NULL)", name="ck_kyc_submissions_reviewed"
        ),
        sa.CheckConstraint(
            "status <> 'rejected' OR reason IS NOT NULL", name="ck_kyc_submissions_rejected_reason"
        ),
    )
    op.create_index(
        "uq_kyc_submissions_one_pending",
        "kyc_submissions",
        ["user_id", "level"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_kyc_submissions_status_id", "kyc_submissions", ["status", "id"])
    op.create_index("ix_kyc_submissions_user_id_id", "kyc_submissions", ["user_id", "id"])
    op.create_table(
        "kyc_documents",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("submission_id", BigId, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("storage_key", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["kyc_submissions.id"],
            name="fk_kyc_documents_submission_id_kyc_submissions",
        ),
        sa.UniqueConstraint("submission_id", "kind", name="uq_kyc_documents_submission_kind"),
        sa.UniqueConstraint("storage_key", name="uq_kyc_documents_storage_key"),
        sa.CheckConstraint(
            "content_type IN ('image/jpeg', 'image/png', 'application/pdf')",
            name="ck_kyc_documents_content_type",
        ),
        sa.CheckConstraint("size_bytes > 0", name="ck_kyc_documents_size_positive"),
    )


def downgrade() -> None:
    op.drop_table("kyc_documents")
    op.drop_index("ix_kyc_submissions_user_id_id", table_name="kyc_submissions")
    op.drop_index("ix_kyc_submissions_status_id", table_name="kyc_submissions")
    op.drop_index("uq_kyc_submissions_one_pending", table_name="kyc_submissions")
    op.drop_table("kyc_submissions")
