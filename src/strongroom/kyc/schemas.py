"""The KYC API's JSON (``/v1/kyc``, ``/v1/admin/kyc``); SPEC §13 wave 2 shapes, and more beside."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from strongroom.kyc.service import REASON_CHARS_MAX


class SubmittedOut(BaseModel):
    id: int
    status: str


class SubmissionSummary(BaseModel):
    id: int
    level: str
    status: str
    reason: str | None
    created_at: datetime


class KycOut(BaseModel):
    tier: str
    submissions: list[SubmissionSummary]


class QueueItem(BaseModel):
    id: int
    user_id: str
    level: str
    age_seconds: int = Field(description="seconds since it was submitted")
    overdue: bool = Field(description="pending for longer than the review target (24 h)")
    status: str
    created_at: datetime


class QueueOut(BaseModel):
    items: list[QueueItem]
    next_cursor: str | None


class DocumentOut(BaseModel):
    id: int
    submission_id: int
    kind: str
    content_type: str
    size_bytes: int


class OrganisationOut(BaseModel):
    """An institutional submission's organisation (R-KYC-4)."""

    name: str
    registration_number: str
    incorporation_country: str
    incorporated_on: date
    organisation_type: str
    registered_address: str = Field(description="its lines, separated by newlines")
    registered_country: str
    business_address: str = Field(description="the principal business address")
    business_country: str


class MemberOut(BaseModel):
    """A member of an institutional submission; their identity document is the submission's
    document of kind ``member_<position>``."""

    position: int
    role: str = Field(
        description="`authorised_representative`, `significant_control` or `beneficial_owner`"
    )
    legal_name: str
    date_of_birth: date
    nationality: str
    document_number: str
    ownership_bps: int | None = Field(description="ownership in basis points (2550 = 25.5 %)")


class SubmissionOut(BaseModel):
    id: int
    user_id: str
    level: str
    status: str
    provider: str
    created_at: datetime
    age_seconds: int
    overdue: bool
    document_country: str | None
    document_type: str | None
    legal_name: str | None
    document_number: str | None
    date_of_birth: date | None
    residence_country: str | None
    based_on_id: int | None = Field(description="the approved primary an advanced one reuses")
    reason: str | None
    reviewer_id: str | None
    reviewed_at: datetime | None
    documents: list[DocumentOut]
    organisation: OrganisationOut | None = Field(
        default=None, description="institutional only: the organisation"
    )
    members: list[MemberOut] = Field(
        default_factory=list, description="institutional only: its members, in order"
    )


class ApproveIn(BaseModel):
    pass


class RejectIn(BaseModel):
    reason: str = Field(min_length=1, max_length=REASON_CHARS_MAX)


class DecisionOut(BaseModel):
    id: int
    status: str
