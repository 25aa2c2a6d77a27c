"""Institutional KYC (R-KYC-4): an organisation applies for the ``institutional`` tier, on the
web only. Services never commit: the request's unit of work does.

An institutional application names the organisation (name, registration number, country and
date of incorporation, type), its registered and principal business addresses, and its members:
exactly one authorised representative, every person with significant control and every ultimate
beneficial owner. Each member has a legal name, date of birth, nationality, ID document number
and an identity document file; ownership is a percentage (at most two decimals, stored in basis
points) that a beneficial owner must give (above 0, at most 100) and the others may; the
beneficial owners together hold at most 100 %. The board resolution and the ownership structure
are files too, and the declaration must be ticked.

Everything is checked before anything is written, in the order of the form (organisation,
addresses, members, documents present, declaration, then each file by its content): a refusal
stores no row and no file. It then becomes a ``kyc_submissions`` row of level ``institutional``
(its ID details empty) with its ``kyc_organisations`` row, its ``kyc_members`` rows and its
documents in the same vault, and enters the same review queue: approval sets the tier
``institutional`` (``service.approve``), a rejection is emailed with its reason and the
organisation may apply again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.errors import ValidationFailed
from strongroom.identity import audit
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.kyc import content, service
from strongroom.kyc.models import (
    BASIS_POINTS_WHOLE,
    BENEFICIAL_OWNER,
    BOARD_RESOLUTION,
    INSTITUTIONAL,
    MEMBER_DOCUMENT_PREFIX,
    MEMBER_ROLES,
    ORGANISATION_DOCUMENTS,
    ORGANISATION_TYPES,
    OWNERSHIP_STRUCTURE,
    PENDING,
    REPRESENTATIVE,
    Member,
    Organisation,
    Submission,
)
from strongroom.kyc.providers import MANUAL, VerificationProvider
from strongroom.settings import KycSettings

ADDRESS_CHARS_MAX: Final = 300
REGISTRATION_NUMBER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ()/.-]{0,63}")
OWNERSHIP: Final = re.compile(r"\d{1,3}(\.\d{1,2})?")
INCORPORATED_AFTER: Final = date(1600, 1, 1)
"""Old enough for the oldest organisations still in business."""
MEMBERS_MAX: Final = 12
"""Members in one application (a request then holds at most ``MEMBERS_MAX + 2`` files)."""
FILES_MAX: Final = MEMBERS_MAX + len(ORGANISATION_DOCUMENTS)


@dataclass(frozen=True, slots=True)
class MemberEntry:
    """A member as typed (text fields as given) and their identity document's bytes."""

    role: str | None = None
    legal_name: str | None = None
    date_of_birth: str | None = None
    nationality: str | None = None
    document_number: str | None = None
    ownership: str | None = None
    document: bytes = b""


@dataclass(frozen=True, slots=True)
class InstitutionalApplication:
    """What the form holds: the organisation's fields, the members, the two organisation
    documents (by kind: ``board_resolution``, ``ownership_structure``) and the declaration."""

    name: str | None = None
    registration_number: str | None = None
    incorporation_country: str | None = None
    incorporated_on: str | None = None
    organisation_type: str | None = None
    registered_address: str | None = None
    registered_country: str | None = None
    business_address: str | None = None
    business_country: str | None = None
    declaration: bool = False
    members: Sequence[MemberEntry] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Institution:
    """An institutional submission's organisation and members, for the reviewer."""

    organisation: Organisation | None
    members: list[Member]


def member_field(position: int, name: str) -> str:
    """The form's name of a member's field (``members-2-legal_name``), which refusals name."""
    return f"members-{position}-{name}"


def submit(
    *,
    session: Session,
    user: User,
    application: InstitutionalApplication,
    settings: KycSettings,
    vault: service.DocumentVault,
    provider: VerificationProvider = MANUAL,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Submission:
    """A pending institutional submission with its organisation, members and documents.
    Refused with nothing written: ``missing_field``, ``invalid_field``,
    ``invalid_organisation_type``, ``members_required``, ``too_many_members``,
    ``invalid_member_role``, ``representative_required``, ``representative_not_unique``,
    ``invalid_ownership``, ``ownership_over_whole``, ``document_required``,
    ``declaration_required``, ``kyc_tier_reached``, ``kyc_submission_pending`` and the files'
    refusals (``document_too_large``, ``unsupported_document_type``, ``invalid_document``)."""
    now = now or db.utcnow()
    today = now.date()
    service.check_open(session, user, INSTITUTIONAL)
    organisation = _organisation(application, today)
    members = _members(application.members, today)
    _documents_present(application)
    if not application.declaration:
        raise ValidationFailed(
            "tick the declaration to submit", code="declaration_required", field="declaration"
        )
    files = _cleaned(application, settings)
    row = Submission(
        user_id=user.id,
        level=INSTITUTIONAL,
        status=PENDING,
        provider=provider.name,
        created_at=now,
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # another request of the same user, at the same moment
        raise service.pending_refusal(
            session.scalars(
                select(Submission).where(
                    Submission.user_id == user.id,
                    Submission.level == INSTITUTIONAL,
                    Submission.status == PENDING,
                )
            ).first()
        ) from None
    organisation.submission_id = row.id
    session.add(organisation)
    for member in members:
        member.submission_id = row.id
        session.add(member)
    session.flush()
    for kind, document in files.items():
        service.store_document(session, vault, row, kind, document, now)
    audit.record(
        session=session,
        action="kyc.submitted",
        actor=user,
        subject_user_id=user.id,
        origin=origin,
        details={
            "submission_id": row.id,
            "level": INSTITUTIONAL,
            "members": len(members),
            "documents": sorted(files),
        },
        now=now,
    )
    service.assess(session, row, provider, origin, now)
    return row


def institution_of(*, session: Session, submission: Submission) -> Institution:
    """The organisation and members of a submission (none for a personal one)."""
    members = session.scalars(
        select(Member).where(Member.submission_id == submission.id).order_by(Member.position)
    )
    return Institution(session.get(Organisation, submission.id), list(members))


def organisation_names(*, session: Session, submission_ids: Sequence[int]) -> dict[int, str]:
    """The organisation's name of each institutional submission among these (one query)."""
    if not submission_ids:
        return {}
    rows = session.execute(
        select(Organisation.submission_id, Organisation.name).where(
            Organisation.submission_id.in_(list(submission_ids))
        )
    )
    return {submission_id: name for submission_id, name in rows}


# --------------------------------------------------------------------------- the checks


def _organisation(application: InstitutionalApplication, today: date) -> Organisation:
    name = service.legal_name_field(application.name, "name")
    number = (application.registration_number or "").strip()
    if not number:
        raise service.missing("registration_number")
    if REGISTRATION_NUMBER.fullmatch(number) is None:
        raise service.invalid("registration_number", "1-64 letters, digits, spaces and ()/.-")
    country = service.country_field("incorporation_country", application.incorporation_country)
    incorporated = service.date_of_birth_field(
        application.incorporated_on,
        today + timedelta(days=1),  # incorporated today is fine
        "incorporated_on",
        INCORPORATED_AFTER,
    )
    kind = (application.organisation_type or "").strip()
    if not kind:
        raise service.missing("organisation_type")
    if kind not in ORGANISATION_TYPES:
        raise ValidationFailed(
            f"organisation_type must be one of {', '.join(ORGANISATION_TYPES)}",
            code="invalid_organisation_type",
            field="organisation_type",
            organisation_types=list(ORGANISATION_TYPES),
        )
    return Organisation(
        name=name,
        registration_number=number,
        incorporation_country=country,
        incorporated_on=incorporated,
        organisation_type=kind,
        registered_address=_address("registered_address", application.registered_address),
        registered_country=service.country_field(
            "registered_country", application.registered_country
        ),
        business_address=_address("business_address", application.business_address),
        business_country=service.country_field("business_country", application.business_country),
    )


def _address(name: str, value: str | None) -> str:
    """The address's lines, each with its spaces collapsed, empty lines dropped."""
    lines = [" ".join(line.split()) for line in (value or "").splitlines()]
    address = "\n".join(line for line in lines if line)
    if not address:
        raise service.missing(name)
    if len(address) > ADDRESS_CHARS_MAX or not all(line.isprintable() for line in lines):
        raise service.invalid(name, f"1-{ADDRESS_CHARS_MAX} printable characters")
    return address


def _members(entries: Sequence[MemberEntry], today: date) -> list[Member]:
    if not entries:
        raise ValidationFailed(
            "name the organisation's members: its authorised representative at least",
            code="members_required",
        )
    if len(entries) > MEMBERS_MAX:
        raise ValidationFailed(
            f"at most {MEMBERS_MAX} members in one application",
            code="too_many_members",
            max_members=MEMBERS_MAX,
        )
    members = [_member(position, entry, today) for position, entry in enumerate(entries, 1)]
    representatives = sum(member.role == REPRESENTATIVE for member in members)
    if representatives == 0:
        raise ValidationFailed(
            "name the organisation's authorised representative",
            code="representative_required",
        )
    if representatives > 1:
        raise ValidationFailed(
            "exactly one member is the authorised representative",
            code="representative_not_unique",
            count=representatives,
        )
    owned = sum(m.ownership_bps or 0 for m in members if m.role == BENEFICIAL_OWNER)
    if owned > BASIS_POINTS_WHOLE:
        raise ValidationFailed(
            "the beneficial owners together hold more than 100 %",
            code="ownership_over_whole",
            total_percent=str(Decimal(owned) / 100),
        )
    return members


def _member(position: int, entry: MemberEntry, today: date) -> Member:
    role = (entry.role or "").strip()
    if not role:
        raise service.missing(member_field(position, "role"))
    if role not in MEMBER_ROLES:
        raise ValidationFailed(
            f"a member's role is one of {', '.join(MEMBER_ROLES)}",
            code="invalid_member_role",
            field=member_field(position, "role"),
            roles=list(MEMBER_ROLES),
        )
    return Member(
        position=position,
        role=role,
        legal_name=service.legal_name_field(entry.legal_name, member_field(position, "legal_name")),
        date_of_birth=service.date_of_birth_field(
            entry.date_of_birth, today, member_field(position, "date_of_birth")
        ),
        nationality=service.country_field(member_field(position, "nationality"), entry.nationality),
        document_number=service.document_number_field(
            entry.document_number, member_field(position, "document_number")
        ),
        ownership_bps=_ownership(position, role, entry.ownership),
    )


def _ownership(position: int, role: str, value: str | None) -> int | None:
    """Basis points from a percentage (``25``, ``25.5``, ``25.50 %``); a beneficial owner's is
    required and above zero, another member's optional."""
    name = member_field(position, "ownership")
    text = (value or "").strip().removesuffix("%").strip()
    if not text:
        if role == BENEFICIAL_OWNER:
            raise service.missing(name)
        return None
    try:
        percent = Decimal(text) if OWNERSHIP.fullmatch(text) else None
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        percent = None
    lowest = Decimal("0.01") if role == BENEFICIAL_OWNER else Decimal(0)
    if percent is None or not lowest <= percent <= 100:
        raise ValidationFailed(
            f"{name}: a percentage from {lowest} to 100, at most two decimals",
            code="invalid_ownership",
            field=name,
            min_percent=str(lowest),
            max_percent="100",
        )
    return int(percent * 100)


def _documents_present(application: InstitutionalApplication) -> None:
    for position, entry in enumerate(application.members, 1):
        if not entry.document:
            raise ValidationFailed(
                "every member's identity document is required",
                code="document_required",
                field=member_field(position, "document"),
            )
    for kind in ORGANISATION_DOCUMENTS:
        if not application.files.get(kind):
            raise ValidationFailed(
                f"the file {kind} is required", code="document_required", field=kind
            )
    unexpected = sorted(set(application.files) - set(ORGANISATION_DOCUMENTS))
    if unexpected:
        raise ValidationFailed(
            f"no file {unexpected[0]} in an institutional application",
            code="unexpected_document",
            field=unexpected[0],
        )


def _cleaned(
    application: InstitutionalApplication, settings: KycSettings
) -> dict[str, content.CleanDocument]:
    """Every file by its content, the organisation's first, then the members' in order."""

    def clean(data: bytes, name: str) -> content.CleanDocument:
        return content.clean(
            data,
            field=name,
            max_bytes=settings.document_max_bytes,
            pixels_max=settings.image_pixels_max,
        )

    files = {
        kind: clean(application.files[kind], kind)
        for kind in (BOARD_RESOLUTION, OWNERSHIP_STRUCTURE)
    }
    for position, entry in enumerate(application.members, 1):
        files[f"{MEMBER_DOCUMENT_PREFIX}{position}"] = clean(
            entry.document, member_field(position, "document")
        )
    return files
