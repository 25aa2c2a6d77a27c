"""institutional KYC: an institutional submission's organisation and its members (R-KYC-4)

``kyc_organisations``: one row per institutional submission (its ``submission_id``): name,
registration number, country and date of incorporation, type, the registered and the principal
business address. ``kyc_members``: the people it names, in order (``position``), each with one
role (authorised representative, person with significant control, ultimate beneficial owner),
their ID details and ownership in basis points where it applies. Their documents stay in
``kyc_documents`` (kinds ``board_resolution``, ``ownership_structure``, ``member_<position>``).

Revision ID: 2026_12_06_0019
Revises: 2026_12_06_0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_12_06_0019"
down_revision = "2026_12_06_0011"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "kyc_organisations",
        sa.Column("submission_id", BigId, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("registration_number", sa.String(64), nullable=False),
        sa.Column("incorporation_country", sa.String(2), nullable=False),
        sa.Column("incorporated_on", sa.Date(), nullable=False),
        sa.Column("organisation_type", sa.String(16), nullable=False),
        sa.Column("registered_address", sa.String(300), nullable=False),
        sa.Column("registered_country", sa.String(2), nullable=False),
        sa.Column("business_address", sa.String(300), nullable=False),
        sa.Column("business_country", sa.String(2), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["kyc_submissions.id"],
            name="fk_kyc_organisations_submission_id_kyc_submissions",
        ),
        sa.CheckConstraint(
            "organisation_type IN ('company', 'partnership', 'trust', 'foundation', 'other')",
            name="ck_kyc_organisations_organisation_type",
        ),
    )
    op.create_table(
        "kyc_members",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("submission_id", BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("legal_name", sa.String(200), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("nationality", sa.String(2), nullable=False),
        sa.Column("document_number", sa.String(64), nullable=False),
        sa.Column("ownership_bps", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["kyc_submissions.id"],
            name="fk_kyc_members_submission_id_kyc_submissions",
        ),
        sa.UniqueConstraint("submission_id", "position", name="uq_kyc_members_submission_position"),
        sa.CheckConstraint(
            "role IN ('authorised_representative', 'significant_control', 'beneficial_owner')",
            name="ck_kyc_members_role",
        ),
        sa.CheckConstraint(
            "ownership_bps IS NULL OR (ownership_bps >= 0 AND ownership_bps <= 10000)",
            name="ck_kyc_members_ownership_range",
        ),
    )


def downgrade() -> None:
    op.drop_table("kyc_members")
    op.drop_table("kyc_organisations")
