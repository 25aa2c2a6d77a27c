"""KYC tables: one row per submission (its level, the ID details, the review's outcome) and one
per document (what the vault holds for it: the sealing key's id, where the sealed bytes are).

Built for every level: ``primary`` and ``advanced`` carry the ID details here; an
``institutional`` submission (R-KYC-4) is the same row with the ID details empty, its
organisation, addresses and members in tables of their own keyed by ``submission_id``, and its
documents (board resolution, ownership structure, members' IDs) in ``kyc_documents`` with a
``kind`` of their own: the same queue, the same vault, the same review.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from strongroom.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")

PRIMARY: Final = "primary"
ADVANCED: Final = "advanced"
INSTITUTIONAL: Final = "institutional"
LEVELS: Final = (PRIMARY, ADVANCED, INSTITUTIONAL)

PENDING: Final = "pending"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
STATUSES: Final = (PENDING, APPROVED, REJECTED)

ID_CARD: Final = "id_card"
PASSPORT: Final = "passport"
DRIVING_LICENCE: Final = "driving_licence"
DOCUMENT_TYPES: Final = (ID_CARD, PASSPORT, DRIVING_LICENCE)

FRONT: Final = "front"
BACK: Final = "back"
SELFIE: Final = "selfie"
DOCUMENT_KINDS: Final = (FRONT, BACK, SELFIE)
"""The files of a personal submission (an institutional one adds its own kinds)."""

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
PDF: Final = "application/pdf"
CONTENT_TYPES: Final = (JPEG, PNG, PDF)


class Submission(Base):
    """One application for a tier. At most one pending per user and level (a partial unique
    index); a decided one has its reviewer (``None``: an automatic provider) and time."""

    __tablename__ = "kyc_submissions"
    __table_args__ = (
        CheckConstraint("level IN ('primary', 'advanced', 'institutional')", name="level"),
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),
        CheckConstraint("(status = 'pending') = (reviewed_at IS NULL)", name="reviewed"),
        CheckConstraint("status <> 'rejected' OR reason IS NOT NULL", name="rejected_reason"),
        Index(
            "uq_kyc_submissions_one_pending",
            "user_id",
            "level",
            unique=True,
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_kyc_submissions_status_id", "status", "id"),
        Index("ix_kyc_submissions_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"))
    level: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    provider: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the ID details (R-KYC-2); empty for an institutional submission
    document_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    document_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    legal_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    document_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    date_of_birth: Mapped[date | None] = mapped_column(Date, nullable=True)
    residence_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    # an advanced submission that reuses an approved primary's details and photos (R-KYC-3)
    based_on_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("kyc_submissions.id"), nullable=True
    )
    reason: Mapped[str | None] = mapped_column(String(280), nullable=True)
    reviewer_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id"), nullable=True
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Document(Base):
    """A file of a submission, sealed in the ``DocumentStore`` under ``storage_key`` with the
    vault key ``key_id`` (rotation: old files open with a retired key); the row's id is the
    ciphertext's associated data, so a file moved to another row does not open."""

    __tablename__ = "kyc_documents"
    __table_args__ = (
        UniqueConstraint("submission_id", "kind", name="uq_kyc_documents_submission_kind"),
        CheckConstraint(
            "content_type IN ('image/jpeg', 'image/png', 'application/pdf')", name="content_type"
        ),
        CheckConstraint("size_bytes > 0", name="size_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    submission_id: Mapped[int] = mapped_column(BigId, ForeignKey("kyc_submissions.id"))
    kind: Mapped[str] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(32))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------- institutional

BOARD_RESOLUTION: Final = "board_resolution"
OWNERSHIP_STRUCTURE: Final = "ownership_structure"
ORGANISATION_DOCUMENTS: Final = (BOARD_RESOLUTION, OWNERSHIP_STRUCTURE)
MEMBER_DOCUMENT_PREFIX: Final = "member_"
"""A member's identity document is the submission's document of kind ``member_<position>``."""

REPRESENTATIVE: Final = "authorised_representative"
CONTROLLER: Final = "significant_control"
BENEFICIAL_OWNER: Final = "beneficial_owner"
MEMBER_ROLES: Final = (REPRESENTATIVE, CONTROLLER, BENEFICIAL_OWNER)

COMPANY: Final = "company"
PARTNERSHIP: Final = "partnership"
TRUST: Final = "trust"
FOUNDATION: Final = "foundation"
OTHER: Final = "other"
ORGANISATION_TYPES: Final = (COMPANY, PARTNERSHIP, TRUST, FOUNDATION, OTHER)

BASIS_POINTS_WHOLE: Final = 10_000
"""100 % in basis points: ownership is stored as an integer (25.5 % is 2550)."""


class Organisation(Base):
    """The organisation of an institutional submission (R-KYC-4): its details and two
    addresses (each the address's lines as written and its country or region)."""

    __tablename__ = "kyc_organisations"
    __table_args__ = (
        CheckConstraint(
            "organisation_type IN ('company', 'partnership', 'trust', 'foundation', 'other')",
            name="organisation_type",
        ),
    )

    submission_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("kyc_submissions.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200))
    registration_number: Mapped[str] = mapped_column(String(64))
    incorporation_country: Mapped[str] = mapped_column(String(2))
    incorporated_on: Mapped[date] = mapped_column(Date)
    organisation_type: Mapped[str] = mapped_column(String(16))
    registered_address: Mapped[str] = mapped_column(String(300))
    registered_country: Mapped[str] = mapped_column(String(2))
    business_address: Mapped[str] = mapped_column(String(300))
    business_country: Mapped[str] = mapped_column(String(2))


class Member(Base):
    """A person named in an institutional submission, in the order given (``position``, from
    1), with one role; ``ownership_bps`` where it applies (required for a beneficial owner).
    Their identity document is the submission's document of kind ``member_<position>``."""

    __tablename__ = "kyc_members"
    __table_args__ = (
        UniqueConstraint("submission_id", "position", name="uq_kyc_members_submission_position"),
        CheckConstraint(
            "role IN ('authorised_representative', 'significant_control', 'beneficial_owner')",
            name="role",
        ),
        CheckConstraint(
            "ownership_bps IS NULL OR (ownership_bps >= 0 AND ownership_bps <= 10000)",
            name="ownership_range",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    submission_id: Mapped[int] = mapped_column(BigId, ForeignKey("kyc_submissions.id"))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    legal_name: Mapped[str] = mapped_column(String(200))
    date_of_birth: Mapped[date] = mapped_column(Date)
    nationality: Mapped[str] = mapped_column(String(2))
    document_number: Mapped[str] = mapped_column(String(64))
    ownership_bps: Mapped[int | None] = mapped_column(Integer, nullable=True)

    @property
    def document_kind(self) -> str:
        return f"{MEMBER_DOCUMENT_PREFIX}{self.position}"
