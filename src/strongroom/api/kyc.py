"""KYC over HTTP (SPEC §13 wave 2, R-KYC-1..5): a user's submissions (``/v1/kyc``) and the
operators' review queue with its documents (``/v1/admin/kyc``, capability ``kyc``: roles
``kyc_reviewer`` and ``admin``). Thin: ``strongroom.kyc.service`` decides, the request's unit
of work commits. Uploads are multipart; each file is read up to ``kyc.document_max_bytes`` and
one byte more (a bigger one is refused without reading the rest)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from strongroom import db
from strongroom.api import RowIdPath, SessionDep, SettingsDep, UserDep, operator_with, origin_of
from strongroom.errors import DomainError, ValidationFailed
from strongroom.identity.models import User
from strongroom.kyc import content, institutional, service
from strongroom.kyc.models import Document, Submission
from strongroom.kyc.schemas import (
    ApproveIn,
    DecisionOut,
    DocumentOut,
    KycOut,
    MemberOut,
    OrganisationOut,
    QueueItem,
    QueueOut,
    RejectIn,
    SubmissionOut,
    SubmissionSummary,
    SubmittedOut,
)
from strongroom.settings import KycSettings, Settings

router = APIRouter(tags=["kyc"])
ReviewerDep = Annotated[User, operator_with(service.CAPABILITY)]
SUBMISSIONS_PATH: Final = "/v1/kyc/submissions"
TEXT_FIELD_CHARS_MAX: Final = 300

ONE: dict[int | str, dict[str, Any]] = {404: {"description": "`kyc_submission_not_found`"}}
DECIDED: dict[int | str, dict[str, Any]] = {
    409: {"description": "`kyc_submission_not_pending` (reviewed already; `details.status`)"},
    403: {"description": "`own_submission`, `forbidden`, `two_factor_required`"},
}


def vault(settings: Settings) -> service.DocumentVault:
    return service.vault_for(settings.kyc, settings.auth.vault)


FILE_FIELDS: Final = ("front", "back", "selfie")
TEXT_FIELDS: Final = (
    "level",
    "document_type",
    "document_country",
    "legal_name",
    "document_number",
    "date_of_birth",
    "residence_country",
)
FORM_FIELDS_MAX: Final = 32


def _text_schema(description: str, max_length: int = TEXT_FIELD_CHARS_MAX) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "description": description}


FILE_SCHEMA: Final = {
    "type": "string",
    "format": "binary",
    "description": "a JPEG, PNG or PDF (decided by its content), at most `kyc.document_max_bytes`",
}
SUBMISSION_BODY: Final[dict[str, Any]] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["level"],
                "properties": {
                    "level": {"type": "string", "enum": ["primary", "advanced"]},
                    "document_type": {
                        "type": "string",
                        "enum": ["id_card", "passport", "driving_licence"],
                    },
                    "document_country": _text_schema("two letters (ISO 3166-1), e.g. `HK`"),
                    "legal_name": _text_schema("as on the document"),
                    "document_number": _text_schema("as on the document"),
                    "date_of_birth": _text_schema("YYYY-MM-DD", 32),
                    "residence_country": _text_schema("advanced: two letters, e.g. `HK`"),
                    "front": FILE_SCHEMA,
                    "back": FILE_SCHEMA,
                    "selfie": {**FILE_SCHEMA, "description": "advanced: a photo of the user"},
                },
            }
        }
    },
}


class MalformedForm(DomainError):
    code = "malformed_form"
    status = 400


async def multipart_form(request: Request) -> FormData:
    """The request's multipart body, parsed by Starlette (files spooled to a temporary file,
    at most ``FILE_FIELDS`` files and ``FORM_FIELDS_MAX`` fields); ``malformed_form`` when it
    does not parse."""
    try:
        return await request.form(max_files=len(FILE_FIELDS), max_fields=FORM_FIELDS_MAX)
    except (StarletteHTTPException, AssertionError, ValueError) as error:
        raise MalformedForm(
            "send the submission as multipart/form-data", max_files=len(FILE_FIELDS)
        ) from error


FormDep = Annotated[FormData, Depends(multipart_form)]


def application_from(form: FormData, settings: KycSettings) -> service.Application:
    """The submission a form holds: its text fields (bounded) and the files' bytes, each read
    up to ``kyc.document_max_bytes`` and one byte more (``content.clean`` refuses those
    without the rest being read). A file field sent as text is a missing file."""
    texts: dict[str, str | None] = {}
    for name in TEXT_FIELDS:
        value = form.get(name)
        text = value if isinstance(value, str) and value.strip() else None
        if text is not None and len(text) > TEXT_FIELD_CHARS_MAX:
            raise ValidationFailed(
                f"{name}: at most {TEXT_FIELD_CHARS_MAX} characters",
                code="invalid_field",
                field=name,
                problem="too long",
            )
        texts[name] = text
    files: dict[str, bytes] = {}
    for name in FILE_FIELDS:
        upload = form.get(name)
        if isinstance(upload, StarletteUploadFile) and (data := read_upload(upload, settings)):
            files[name] = data
    return service.Application(
        level=texts.pop("level") or "",
        files=files,
        **texts,
    )


def read_upload(upload: StarletteUploadFile, settings: KycSettings) -> bytes:
    """The file's bytes, at most one more than the limit."""
    upload.file.seek(0)
    return upload.file.read(settings.document_max_bytes + 1)


@router.post(
    SUBMISSIONS_PATH,
    status_code=201,
    response_model=SubmittedOut,
    openapi_extra={"requestBody": SUBMISSION_BODY},
    responses={
        400: {"description": "`malformed_form` (not a multipart body, too many parts)"},
        409: {"description": "`kyc_submission_pending`, `kyc_tier_reached`"},
        413: {"description": "`document_too_large` (`details.field`, `max_bytes`)"},
        415: {"description": "`unsupported_document_type` (by content: JPEG, PNG or PDF)"},
        422: {
            "description": "`invalid_level`, `invalid_document_type`, `missing_field`, "
            "`invalid_field`, `document_required`, `unexpected_document`, `invalid_document`"
        },
    },
)
def submit(
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    form: FormDep,
) -> JSONResponse:
    """Submit KYC (R-KYC-2, R-KYC-3), multipart: `level`, `document_country`, `document_type`,
    `legal_name`, `document_number`, `date_of_birth`, files `front`, `back`; advanced adds
    `selfie`, `residence_country` (after an approved primary only `document_type`, `selfie` and
    `residence_country`). Files are JPEG, PNG or PDF, decided by their content; images are
    stored re-encoded without their metadata, every file sealed with the vault key."""
    row = service.submit(
        session=session,
        user=user,
        application=application_from(form, settings.kyc),
        settings=settings.kyc,
        vault=vault(settings),
        origin=origin_of(request),
    )
    return JSONResponse({"id": row.id, "status": row.status}, status_code=201)


@router.get("/v1/kyc")
def my_kyc(user: UserDep, session: SessionDep, settings: SettingsDep) -> KycOut:
    """The user's tier and their submissions, newest first."""
    rows = service.history(session=session, user=user, limit=settings.kyc.history_max)
    return KycOut(
        tier=user.kyc_tier,
        submissions=[
            SubmissionSummary(
                id=row.id,
                level=row.level,
                status=row.status,
                reason=row.reason,
                created_at=row.created_at,
            )
            for row in rows
        ],
    )


@router.get(
    "/v1/admin/kyc/submissions",
    tags=["operator"],
    responses={422: {"description": "`invalid_status`, `invalid_cursor`"}},
)
def review_queue(
    operator: ReviewerDep,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[str | None, Query(pattern="^(pending|approved|rejected)$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> QueueOut:
    """Submissions oldest first (of one status or all) with their age against the review
    target; ``?status=pending`` is the queue."""
    size = min(limit or settings.kyc.queue_page_max, settings.kyc.queue_page_max)
    page = service.queue(session=session, status=status, limit=size, cursor=cursor)
    now = db.utcnow()
    return QueueOut(
        items=[_queue_item(row, now, settings.kyc) for row in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/v1/admin/kyc/submissions/{submission_id}", tags=["operator"], responses=ONE)
def submission_detail(
    submission_id: RowIdPath, operator: ReviewerDep, session: SessionDep, settings: SettingsDep
) -> SubmissionOut:
    """A submission's ID details and its documents' ids (the photos of the primary that an
    advanced one reuses included); an institutional one's organisation and members; the files
    are ``GET /v1/admin/kyc/documents/{id}``."""
    row = service.get(session=session, submission_id=submission_id)
    documents = service.documents_of(session=session, submission=row)
    out = submission_out(row, documents, db.utcnow(), settings.kyc)
    found = institutional.institution_of(session=session, submission=row)
    if found.organisation is not None:
        out.organisation = OrganisationOut.model_validate(found.organisation, from_attributes=True)
    out.members = [
        MemberOut.model_validate(member, from_attributes=True) for member in found.members
    ]
    return out


@router.get(
    "/v1/admin/kyc/documents/{document_id}",
    tags=["operator"],
    response_class=Response,
    responses={
        200: {
            "description": "the decrypted file (`image/jpeg`, `image/png`, `application/pdf`)",
            "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        404: {"description": "`document_not_found`"},
        500: {"description": "`document_unreadable` (the stored file is missing or altered)"},
    },
)
def document_file(
    document_id: RowIdPath,
    request: Request,
    operator: ReviewerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """A document, decrypted, for an operator; the view is in the audit log. Never cached."""
    document, data = service.open_document(
        session=session,
        operator=operator,
        document_id=document_id,
        vault=vault(settings),
        origin=origin_of(request),
    )
    return document_response(document, data)


def document_response(document: Document, data: bytes) -> Response:
    """The file with a type the content decided, never sniffed, never cached, in a sandbox;
    images inline (the console shows them), a PDF as a download."""
    extension = content.EXTENSIONS[document.content_type]
    disposition = "attachment" if extension == "pdf" else "inline"
    return Response(
        content=data,
        media_type=document.content_type,
        headers={
            "Content-Disposition": f'{disposition}; filename="kyc-document-{document.id}.'
            f'{extension}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


@router.post(
    "/v1/admin/kyc/submissions/{submission_id}/approve",
    tags=["operator"],
    responses={**ONE, **DECIDED},
)
def approve(
    submission_id: RowIdPath,
    request: Request,
    operator: ReviewerDep,
    session: SessionDep,
    body: ApproveIn | None = None,
) -> DecisionOut:
    """Approve: the user's tier becomes the submission's level; they are emailed."""
    row = service.approve(
        session=session, reviewer=operator, submission_id=submission_id, origin=origin_of(request)
    )
    return DecisionOut(id=row.id, status=row.status)


@router.post(
    "/v1/admin/kyc/submissions/{submission_id}/reject",
    tags=["operator"],
    responses={**ONE, **DECIDED, 422: {"description": "`invalid_reason`, `validation_error`"}},
)
def reject(
    submission_id: RowIdPath,
    body: RejectIn,
    request: Request,
    operator: ReviewerDep,
    session: SessionDep,
) -> DecisionOut:
    """Reject with a reason the user reads (emailed; they may submit again)."""
    row = service.reject(
        session=session,
        reviewer=operator,
        submission_id=submission_id,
        reason=body.reason,
        origin=origin_of(request),
    )
    return DecisionOut(id=row.id, status=row.status)


def _queue_item(row: Submission, now: datetime, settings: KycSettings) -> QueueItem:
    return QueueItem(
        id=row.id,
        user_id=row.user_id,
        level=row.level,
        age_seconds=service.age_seconds(row, now),
        overdue=service.overdue(row, now, settings),
        status=row.status,
        created_at=row.created_at,
    )


def submission_out(
    row: Submission, documents: list[Document], now: datetime, settings: KycSettings
) -> SubmissionOut:
    return SubmissionOut(
        id=row.id,
        user_id=row.user_id,
        level=row.level,
        status=row.status,
        provider=row.provider,
        created_at=row.created_at,
        age_seconds=service.age_seconds(row, now),
        overdue=service.overdue(row, now, settings),
        document_country=row.document_country,
        document_type=row.document_type,
        legal_name=row.legal_name,
        document_number=row.document_number,
        date_of_birth=row.date_of_birth,
        residence_country=row.residence_country,
        based_on_id=row.based_on_id,
        reason=row.reason,
        reviewer_id=row.reviewer_id,
        reviewed_at=row.reviewed_at,
        documents=[
            DocumentOut(
                id=document.id,
                submission_id=document.submission_id,
                kind=document.kind,
                content_type=document.content_type,
                size_bytes=document.size_bytes,
            )
            for document in documents
        ],
    )
