"""KYC submissions and their review (R-KYC-1..5). Services never commit: the request's unit of
work does.

A user submits a level (``primary``, ``advanced``; ``institutional`` has its own flow) with the
ID details and files. Everything is checked before anything is written: the fields, the level
against the user's tier and their pending submissions (one pending per level: 409
``kyc_submission_pending``), each file by its content (``content.clean``). Only then is the row
inserted and each document sealed (AES-GCM, the vault key, the document's id as associated
data) and put in the ``DocumentStore``; a rolled-back transaction deletes the files it wrote,
so a refusal leaves no row and no file. The verification provider then looks at it (the
built-in one leaves it to an operator).

An advanced submission reuses an approved primary when there is one (R-KYC-3): only the
document type is asked again, with the selfie and the country of residence; the name, date of
birth and country of the document are the primary's, and so are its photos and number when the
document type is the same (another type needs its number and photos). Without an approved
primary, advanced asks for everything primary does plus the selfie and residence (primary may
be skipped).

An operator holding ``kyc`` (``kyc_reviewer``, ``admin``) approves (the user's tier becomes the
level, never lower than it was) or rejects with a reason, once: a decided submission is 409
``kyc_submission_not_pending`` and nothing changes. The user is emailed the result (with their
anti-phishing code, as every email); after a rejection they may submit again. Every decision
and every document view is in the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strongroom import db
from strongroom import paging as cursors
from strongroom.errors import Conflict, Forbidden, NotFound, ValidationFailed
from strongroom.identity import audit, roles
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.kyc import content
from strongroom.kyc.errors import DocumentUnreadable
from strongroom.kyc.models import (
    ADVANCED,
    APPROVED,
    BACK,
    DOCUMENT_TYPES,
    FRONT,
    INSTITUTIONAL,
    PENDING,
    PRIMARY,
    REJECTED,
    SELFIE,
    STATUSES,
    Document,
    Submission,
)
from strongroom.kyc.providers import MANUAL, VerificationProvider
from strongroom.kyc.store import DocumentStore, FilesystemStore, new_key
from strongroom.notify import outbox
from strongroom.settings import KycSettings
from strongroom.vault import Keyring, VaultError

CAPABILITY: Final = "kyc"
CURSOR: Final = "kyc"
UNVERIFIED: Final = "unverified"
TIER_RANK: Final = {UNVERIFIED: 0, PRIMARY: 1, ADVANCED: 2, INSTITUTIONAL: 3}
REASON_CHARS_MAX: Final = 280
NAME_CHARS_MAX: Final = 200
COUNTRY: Final = re.compile(r"[A-Z]{2}")
DOCUMENT_NUMBER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ()/.-]{0,63}")
BORN_AFTER: Final = date(1900, 1, 1)
WRITTEN_FILES: Final = "strongroom.kyc.written_files"


@dataclass(frozen=True, slots=True)
class Application:
    """What a user sends (the form's text fields as given, the files' bytes by field)."""

    level: str
    document_type: str | None = None
    document_country: str | None = None
    legal_name: str | None = None
    document_number: str | None = None
    date_of_birth: str | None = None
    residence_country: str | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocumentVault:
    """The keyring that seals and the store that keeps the sealed bytes."""

    keyring: Keyring
    store: DocumentStore


@dataclass(frozen=True, slots=True)
class QueuePage:
    items: list[Submission]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class _Details:
    document_type: str
    document_country: str
    legal_name: str
    document_number: str
    date_of_birth: date
    residence_country: str | None
    based_on_id: int | None
    required_files: tuple[str, ...]


# --------------------------------------------------------------------------- the user


def submit(
    *,
    session: Session,
    user: User,
    application: Application,
    settings: KycSettings,
    vault: DocumentVault,
    provider: VerificationProvider = MANUAL,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Submission:
    """A pending submission with its documents sealed in the vault. Refused, with nothing
    written: ``invalid_level``, ``invalid_document_type``, ``missing_field``, ``invalid_field``,
    ``document_required``, ``kyc_tier_reached``, ``kyc_submission_pending`` and the files'
    refusals (``document_too_large``, ``unsupported_document_type``, ``invalid_document``)."""
    now = now or db.utcnow()
    level = _level(application.level)
    check_open(session, user, level)
    details = _details(session, user, level, application, now.date())
    files = _cleaned(application.files, details.required_files, level, settings)
    row = Submission(
        user_id=user.id,
        level=level,
        status=PENDING,
        provider=provider.name,
        created_at=now,
        document_type=details.document_type,
        document_country=details.document_country,
        legal_name=details.legal_name,
        document_number=details.document_number,
        date_of_birth=details.date_of_birth,
        residence_country=details.residence_country,
        based_on_id=details.based_on_id,
    )
    try:
        with session.begin_nested():  # on a conflict the row leaves the session with it
            session.add(row)
            session.flush()
    except IntegrityError:  # another request of the same user and level, at the same moment
        raise pending_refusal(_pending_of(session, user.id, level)) from None
    for kind, document in files.items():
        store_document(session, vault, row, kind, document, now)
    audit.record(
        session=session,
        action="kyc.submitted",
        actor=user,
        subject_user_id=user.id,
        origin=origin,
        details={"submission_id": row.id, "level": level, "documents": sorted(files)},
        now=now,
    )
    assess(session, row, provider, origin, now)
    return row


def assess(
    session: Session,
    row: Submission,
    provider: VerificationProvider,
    origin: Origin,
    now: datetime,
) -> None:
    """Let the provider look at a new submission (the built-in one leaves it pending)."""
    verdict = provider.assess(row)
    if verdict.status == APPROVED:
        _decide(session, row, None, APPROVED, None, origin, now)
    elif verdict.status == REJECTED:
        _decide(session, row, None, REJECTED, verdict.reason or "rejected", origin, now)


def history(*, session: Session, user: User, limit: int) -> list[Submission]:
    """The user's submissions, newest first."""
    return list(
        session.scalars(
            select(Submission)
            .where(Submission.user_id == user.id)
            .order_by(Submission.id.desc())
            .limit(limit)
        )
    )


def _level(value: str) -> str:
    level = value.strip().lower()
    if level == INSTITUTIONAL:
        raise ValidationFailed(
            "institutional verification is made in the web app", code="invalid_level"
        )
    if level not in (PRIMARY, ADVANCED):
        raise ValidationFailed(
            "level must be primary or advanced", code="invalid_level", levels=[PRIMARY, ADVANCED]
        )
    return level


def check_open(session: Session, user: User, level: str) -> None:
    if TIER_RANK.get(user.kyc_tier, 0) >= TIER_RANK[level] or user.kyc_tier == INSTITUTIONAL:
        raise Conflict(
            f"this account is already verified at {user.kyc_tier}",
            code="kyc_tier_reached",
            tier=user.kyc_tier,
        )
    pending = _pending_of(session, user.id, level)
    if pending is not None:
        raise pending_refusal(pending)


def _pending_of(session: Session, user_id: str, level: str) -> Submission | None:
    return session.scalars(
        select(Submission).where(
            Submission.user_id == user_id,
            Submission.level == level,
            Submission.status == PENDING,
        )
    ).first()


def pending_refusal(pending: Submission | None) -> Conflict:
    return Conflict(
        "a submission of this level is waiting for review",
        code="kyc_submission_pending",
        submission_id=pending.id if pending is not None else None,
    )


def approved_primary(session: Session, user_id: str) -> Submission | None:
    """The user's newest approved primary submission (what advanced reuses)."""
    return session.scalars(
        select(Submission)
        .where(
            Submission.user_id == user_id,
            Submission.level == PRIMARY,
            Submission.status == APPROVED,
        )
        .order_by(Submission.id.desc())
    ).first()


def _details(
    session: Session, user: User, level: str, application: Application, today: date
) -> _Details:
    document_type = _document_type(application.document_type)
    residence = None
    if level == ADVANCED:
        residence = country_field("residence_country", application.residence_country)
        primary = approved_primary(session, user.id)
        if primary is not None:
            return _reused(primary, document_type, residence, application)
    return _Details(
        document_type=document_type,
        document_country=country_field("document_country", application.document_country),
        legal_name=legal_name_field(application.legal_name),
        document_number=document_number_field(application.document_number),
        date_of_birth=date_of_birth_field(application.date_of_birth, today),
        residence_country=residence,
        based_on_id=None,
        required_files=(FRONT, BACK, SELFIE) if level == ADVANCED else (FRONT, BACK),
    )


def _reused(
    primary: Submission, document_type: str, residence: str, application: Application
) -> _Details:
    """Advanced on top of an approved primary: its details; its number and photos too when
    the document type is the same, else the new document's number and photos."""
    same = document_type == primary.document_type
    number = (
        primary.document_number
        if same and not application.document_number
        else document_number_field(application.document_number)
    )
    return _Details(
        document_type=document_type,
        document_country=primary.document_country or "",
        legal_name=primary.legal_name or "",
        document_number=number or "",
        date_of_birth=primary.date_of_birth or BORN_AFTER,
        residence_country=residence,
        based_on_id=primary.id,
        required_files=(SELFIE,) if same else (FRONT, BACK, SELFIE),
    )


def missing(name: str) -> ValidationFailed:
    return ValidationFailed(f"{name} is required", code="missing_field", field=name)


def invalid(name: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"{name}: {problem}", code="invalid_field", field=name, problem=problem)


def _document_type(value: str | None) -> str:
    if not value or not value.strip():
        raise missing("document_type")
    if value.strip() not in DOCUMENT_TYPES:
        raise ValidationFailed(
            f"document_type must be one of {', '.join(DOCUMENT_TYPES)}",
            code="invalid_document_type",
            document_types=list(DOCUMENT_TYPES),
        )
    return value.strip()


def country_field(name: str, value: str | None) -> str:
    if not value or not value.strip():
        raise missing(name)
    code = value.strip().upper()
    if COUNTRY.fullmatch(code) is None:
        raise invalid(name, "a two-letter country or region code (ISO 3166-1), e.g. HK")
    return code


def legal_name_field(value: str | None, field_name: str = "legal_name") -> str:
    name = " ".join((value or "").split())
    if not name:
        raise missing(field_name)
    if len(name) > NAME_CHARS_MAX or not name.isprintable():
        raise invalid(field_name, f"1-{NAME_CHARS_MAX} printable characters")
    return name


def document_number_field(value: str | None, field_name: str = "document_number") -> str:
    number = (value or "").strip()
    if not number:
        raise missing(field_name)
    if DOCUMENT_NUMBER.fullmatch(number) is None:
        raise invalid(field_name, "1-64 letters, digits, spaces and ()/.-")
    return number


def date_of_birth_field(
    value: str | None,
    today: date,
    field_name: str = "date_of_birth",
    earliest: date = BORN_AFTER,
) -> date:
    """A date from ``earliest`` (1900) until yesterday (a birth; an incorporation)."""
    if not value or not value.strip():
        raise missing(field_name)
    try:
        born = date.fromisoformat(value.strip())
    except ValueError:
        raise invalid(field_name, "a date as YYYY-MM-DD") from None
    if not earliest <= born < today:
        raise invalid(field_name, f"a date in the past, after {earliest.year}")
    return born


def _cleaned(
    files: Mapping[str, bytes], required: tuple[str, ...], level: str, settings: KycSettings
) -> dict[str, content.CleanDocument]:
    allowed = (FRONT, BACK, SELFIE) if level == ADVANCED else (FRONT, BACK)
    for kind in required:
        if not files.get(kind):
            raise ValidationFailed(
                f"the file {kind} is required", code="document_required", field=kind
            )
    unexpected = sorted(set(files) - set(allowed))
    if unexpected:
        raise ValidationFailed(
            f"no file {unexpected[0]} at this level",
            code="unexpected_document",
            field=unexpected[0],
        )
    return {
        kind: content.clean(
            data,
            field=kind,
            max_bytes=settings.document_max_bytes,
            pixels_max=settings.image_pixels_max,
        )
        for kind, data in files.items()
        if data
    }


def store_document(
    session: Session,
    vault: DocumentVault,
    submission: Submission,
    kind: str,
    document: content.CleanDocument,
    now: datetime,
) -> Document:
    row = Document(
        submission_id=submission.id,
        kind=kind,
        content_type=document.content_type,
        size_bytes=len(document.data),
        key_id=vault.keyring.current_id or "",
        storage_key=new_key(),
        created_at=now,
    )
    session.add(row)
    session.flush()
    key_id, sealed = vault.keyring.seal_bytes(document.data, context=_context(row.id))
    row.key_id = key_id
    _forget_on_rollback(session, vault.store, row.storage_key)
    vault.store.put(row.storage_key, sealed)
    return row


def _context(document_id: int) -> str:
    return f"kyc_documents:{document_id}"


def _forget_on_rollback(session: Session, store: DocumentStore, key: str) -> None:
    """Delete the file again if this transaction rolls back (a refusal after it was written,
    a failed commit): no file without its row. Once committed, the files stay."""
    written: list[tuple[DocumentStore, str]] | None = session.info.get(WRITTEN_FILES)
    if written is None:
        written = session.info[WRITTEN_FILES] = []

        def rolled_back(rolled: Session) -> None:
            for each_store, each_key in rolled.info.pop(WRITTEN_FILES, []):
                each_store.delete(each_key)

        def committed(done: Session) -> None:
            done.info.pop(WRITTEN_FILES, None)

        event.listen(session, "after_rollback", rolled_back)
        event.listen(session, "after_commit", committed)
    written.append((store, key))


# --------------------------------------------------------------------------- the reviewer


def queue(
    *, session: Session, status: str | None, limit: int, cursor: str | None = None
) -> QueuePage:
    """Submissions oldest first (the queue's order: the longest waiting on top), of one
    status or all."""
    if status is not None and status not in STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(STATUSES)}", code="invalid_status"
        )
    query = select(Submission).order_by(Submission.id).limit(limit + 1)
    if status is not None:
        query = query.where(Submission.status == status)
    if cursor is not None:
        query = query.where(Submission.id > cursors.decode(CURSOR, cursor))
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return QueuePage(rows, cursors.encode(CURSOR, rows[-1].id) if more and rows else None)


def age_seconds(submission: Submission, now: datetime) -> int:
    return max(0, int((now - submission.created_at).total_seconds()))


def overdue(submission: Submission, now: datetime, settings: KycSettings) -> bool:
    target = timedelta(hours=settings.review_target_hours)
    return submission.status == PENDING and now - submission.created_at > target


def get(*, session: Session, submission_id: int) -> Submission:
    row = session.get(Submission, submission_id)
    if row is None:
        raise NotFound("no such KYC submission", code="kyc_submission_not_found")
    return row


def documents_of(*, session: Session, submission: Submission) -> list[Document]:
    """The submission's documents, and those of the primary it reuses (its photos)."""
    ids = [submission.id] + ([submission.based_on_id] if submission.based_on_id else [])
    return list(
        session.scalars(
            select(Document).where(Document.submission_id.in_(ids)).order_by(Document.id)
        )
    )


def user_of(*, session: Session, submission: Submission) -> User:
    return session.get_one(User, submission.user_id)


def open_document(
    *,
    session: Session,
    operator: User,
    document_id: int,
    vault: DocumentVault,
    origin: Origin = NOWHERE,
) -> tuple[Document, bytes]:
    """A document's plaintext for an operator holding ``kyc``; the view is in the audit log
    (kept, whatever happens next). ``document_not_found``; ``document_unreadable`` when the
    sealed file is missing, altered or moved: nothing is served."""
    roles.require(operator.operator_role, CAPABILITY)
    document = session.get(Document, document_id)
    if document is None:
        raise NotFound("no such KYC document", code="document_not_found")
    submission = session.get_one(Submission, document.submission_id)
    operator_id, user_id = operator.id, submission.user_id
    details = {
        "document_id": document.id,
        "submission_id": submission.id,
        "kind": document.kind,
    }

    def write(kept: Session) -> None:
        audit.record(
            session=kept,
            category=audit.OPERATOR,
            action="kyc.document_viewed",
            actor=kept.get_one(User, operator_id),
            subject_user_id=user_id,
            origin=origin,
            details=details,
        )

    db.keep(session, write)
    try:
        sealed = vault.store.get(document.storage_key)
        plain = vault.keyring.open_bytes(document.key_id, sealed, context=_context(document.id))
    except (KeyError, VaultError) as error:
        raise DocumentUnreadable(
            "this document does not open: its stored file is missing or was altered",
            document_id=document.id,
        ) from error
    return document, plain


def read_document(*, document: Document, vault: DocumentVault) -> bytes:
    """A document's plaintext for its owner's data export (``privacy.service.export``; the
    caller proved the owner's identity and audits the export): ``document_unreadable`` when
    the sealed file is missing, altered or moved."""
    try:
        sealed = vault.store.get(document.storage_key)
        return vault.keyring.open_bytes(document.key_id, sealed, context=_context(document.id))
    except (KeyError, VaultError) as error:
        raise DocumentUnreadable(
            "this document does not open: its stored file is missing or was altered",
            document_id=document.id,
        ) from error


def approve(
    *, session: Session, reviewer: User, submission_id: int, origin: Origin = NOWHERE
) -> Submission:
    """Approve a pending submission: the user's tier becomes its level (never lower than it
    was), their verified legal name and nationality those of its document, and they are
    emailed. ``kyc_submission_not_found``, ``kyc_submission_not_pending``,
    ``own_submission``."""
    row = _reviewable(session, reviewer, submission_id)
    _decide(session, row, reviewer, APPROVED, None, origin, db.utcnow())
    return row


def reject(
    *,
    session: Session,
    reviewer: User,
    submission_id: int,
    reason: str,
    origin: Origin = NOWHERE,
) -> Submission:
    """Reject a pending submission with a reason the user reads (emailed; they may submit
    again). ``invalid_reason`` and the refusals of ``approve``."""
    cleaned = " ".join(reason.split())
    if not 0 < len(cleaned) <= REASON_CHARS_MAX:
        raise ValidationFailed(
            f"a reason of 1-{REASON_CHARS_MAX} characters is required",
            code="invalid_reason",
            max_chars=REASON_CHARS_MAX,
        )
    row = _reviewable(session, reviewer, submission_id)
    _decide(session, row, reviewer, REJECTED, cleaned, origin, db.utcnow())
    return row


def _reviewable(session: Session, reviewer: User, submission_id: int) -> Submission:
    roles.require(reviewer.operator_role, CAPABILITY)
    row = session.scalars(
        select(Submission).where(Submission.id == submission_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound("no such KYC submission", code="kyc_submission_not_found")
    if row.status != PENDING:
        raise Conflict(
            f"this submission was {row.status} already",
            code="kyc_submission_not_pending",
            status=row.status,
        )
    if row.user_id == reviewer.id:
        raise Forbidden("nobody reviews their own submission", code="own_submission")
    return row


def _set_verified_identity(user: User, row: Submission) -> None:
    """The identity fields other packages read, from the approved document (issue #11):
    ``users.legal_name`` (banking's same-name rule, ``banking.service.verified_legal_name``)
    and ``users.nationality`` = the document's country (the limits' high-risk nationality list,
    72 h T+N). A submission without them (institutional) leaves them as they were."""
    if row.legal_name:
        user.legal_name = row.legal_name
    if row.document_country:
        user.nationality = row.document_country.upper()


def _decide(
    session: Session,
    row: Submission,
    reviewer: User | None,
    status: str,
    reason: str | None,
    origin: Origin,
    now: datetime,
) -> None:
    user = session.scalars(select(User).where(User.id == row.user_id).with_for_update()).one()
    row.status, row.reason, row.reviewed_at = status, reason, now
    row.reviewer_id = reviewer.id if reviewer is not None else None
    if status == APPROVED and TIER_RANK.get(user.kyc_tier, 0) < TIER_RANK[row.level]:
        user.kyc_tier = row.level
    if status == APPROVED:
        _set_verified_identity(user, row)
    session.flush()
    audit.record(
        session=session,
        category=audit.OPERATOR,
        action=f"kyc.{status}",
        actor=reviewer,
        subject_user_id=user.id,
        origin=origin,
        details={
            "submission_id": row.id,
            "level": row.level,
            "provider": row.provider,
            "tier": user.kyc_tier,
            **({"reason": reason} if reason else {}),
        },
        now=now,
    )
    outbox.send_to_user(
        session=session,
        user=user,
        template_id=f"kyc.{status}",
        context={"level": row.level, "reason": reason, "tier": user.kyc_tier},
        now=now,
    )


def vault_for(settings: KycSettings, keyring: Keyring) -> DocumentVault:
    """The default vault: the keyring of the settings and files under ``documents_dir``."""
    return DocumentVault(keyring=keyring, store=FilesystemStore(settings.documents_path()))
