"""The KYC review queue (R-KYC-5): ``/console/kyc`` lists submissions (pending by default,
oldest first) with their age against the review target; ``/console/kyc/<id>`` shows one: the
ID details, its documents (images inline, PDFs as a link), and the forms to approve or to
reject it with a reason. The documents are served by ``/console/kyc/documents/<id>``, which
opens them through ``kyc.service.open_document`` exactly as ``/v1/admin/kyc/documents/<id>``
does (decrypted for an operator holding ``kyc``, each view in the audit log, never cached).
Decisions call ``kyc.service.approve`` / ``reject`` as the operator API does; after a change:
303 to the submission's page; a refusal shows the page again with a sentence and its status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.api.kyc import document_response, vault
from strongroom.errors import DomainError
from strongroom.kyc import institutional, service
from strongroom.kyc.models import PENDING, STATUSES, Document, Member, Submission
from strongroom.settings import KycSettings
from strongroom.web import core
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import N_, Lang, lang_of

router = APIRouter(prefix=PREFIX)
PATH: Final = "/console/kyc"
PAGE_SIZE: Final = 50
ReviewerGuard = Annotated[Operator, Depends(ConsoleGuard(service.CAPABILITY))]

STATUS_NAMES: Final = {
    "pending": N_("Waiting for review"),
    "approved": N_("Approved"),
    "rejected": N_("Rejected"),
}
LEVEL_NAMES: Final = {
    "primary": N_("Primary"),
    "advanced": N_("Advanced"),
    "institutional": N_("Institutional"),
}
DOCUMENT_TYPE_NAMES: Final = {
    "id_card": N_("Identity card"),
    "passport": N_("Passport"),
    "driving_licence": N_("Driving licence"),
}
KIND_NAMES: Final = {
    "front": N_("Front"),
    "back": N_("Back"),
    "selfie": N_("Selfie"),
    "board_resolution": N_("Board resolution"),
    "ownership_structure": N_("Ownership structure"),
}
ORGANISATION_TYPE_NAMES: Final = {
    "company": N_("Company"),
    "partnership": N_("Partnership"),
    "trust": N_("Trust"),
    "foundation": N_("Foundation"),
    "other": N_("Other"),
}
ROLE_NAMES: Final = {
    "authorised_representative": N_("Authorised representative"),
    "significant_control": N_("Person with significant control"),
    "beneficial_owner": N_("Ultimate beneficial owner"),
}
REFUSALS: Final = {
    "kyc_submission_not_pending": N_("This submission was reviewed already. Nothing changed."),
    "own_submission": N_("This is your own submission: another reviewer must decide it."),
    "invalid_reason": N_("Give the user a reason, in at most %(max)s characters."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


class RejectForm(BaseModel):
    reason: str = Field(default="", max_length=service.REASON_CHARS_MAX * 2)


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    user_id: str
    level: str
    status: str
    status_name: str
    submitted_at: str
    age: str
    overdue: bool
    organisation: str = ""


def _age(lang: Lang, seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    if hours >= 48:
        return lang.gettext(N_("%(days)s days")) % {"days": hours // 24}
    return lang.gettext(N_("%(hours)s h %(minutes)s min")) % {
        "hours": hours,
        "minutes": rest // 60,
    }


def _row(
    row: Submission, lang: Lang, now: datetime, settings: KycSettings, organisation: str = ""
) -> Row:
    return Row(
        id=row.id,
        user_id=row.user_id,
        level=lang.gettext(LEVEL_NAMES.get(row.level, row.level)),
        status=row.status,
        status_name=lang.gettext(STATUS_NAMES[row.status]),
        submitted_at=lang.when(row.created_at),
        age=_age(lang, service.age_seconds(row, now)),
        overdue=service.overdue(row, now, settings),
        organisation=organisation,
    )


@router.get("/kyc", response_class=HTMLResponse)
def queue_page(
    operator: ReviewerGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[str, Query(pattern="^(|all|pending|approved|rejected)$")] = PENDING,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    lang = lang_of(request)
    found = service.queue(
        session=session,
        status=status if status in STATUSES else None,
        limit=PAGE_SIZE,
        cursor=cursor or None,
    )
    now = db.utcnow()
    names = institutional.organisation_names(
        session=session, submission_ids=[item.id for item in found.items]
    )
    values: dict[str, Any] = {
        "rows": [
            _row(item, lang, now, settings.kyc, names.get(item.id, "")) for item in found.items
        ],
        "next_cursor": found.next_cursor,
        "cursor": cursor,
        "status": status if status in STATUSES else "all",
        "statuses": list(STATUS_NAMES.items()),
        "target_hours": settings.kyc.review_target_hours,
    }
    return page(request, "console/kyc.html", values, operator=operator, current=PATH)


@router.get("/kyc/{submission_id}", response_class=HTMLResponse)
def submission_page(
    submission_id: int,
    operator: ReviewerGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    return _one(request, operator, session, settings.kyc, submission_id)


def _one(
    request: Request,
    operator: Operator,
    session: Session,
    settings: KycSettings,
    submission_id: int,
    *,
    error: str | None = None,
    reason: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    found = service.get(session=session, submission_id=submission_id)
    documents = service.documents_of(session=session, submission=found)
    user = service.user_of(session=session, submission=found)
    institution = institutional.institution_of(session=session, submission=found)
    names = {member.document_kind: member.legal_name for member in institution.members}
    values = {
        "organisation": institution.organisation,
        "organisation_type": lang.gettext(
            ORGANISATION_TYPE_NAMES.get(
                institution.organisation.organisation_type,
                institution.organisation.organisation_type,
            )
        )
        if institution.organisation
        else "",
        "members": [_member(member, lang) for member in institution.members],
        "row": _row(found, lang, db.utcnow(), settings),
        "submission": found,
        "user": user,
        "document_type": lang.gettext(
            DOCUMENT_TYPE_NAMES.get(found.document_type or "", found.document_type or "")
        ),
        "documents": [_document(document, found, lang, names) for document in documents],
        "reviewed_at": lang.when(found.reviewed_at) if found.reviewed_at else "",
        "may_decide": found.status == PENDING and found.user_id != operator.user.id,
        "error": error,
        "reason": reason,
        "reason_max": service.REASON_CHARS_MAX,
    }
    return page(
        request,
        "console/kyc_submission.html",
        values,
        operator=operator,
        current=PATH,
        status_code=status_code,
    )


def _member(member: Member, lang: Lang) -> dict[str, Any]:
    return {
        "position": member.position,
        "role": member.role,
        "role_name": lang.gettext(ROLE_NAMES.get(member.role, member.role)),
        "legal_name": member.legal_name,
        "date_of_birth": member.date_of_birth.isoformat(),
        "nationality": member.nationality,
        "document_number": member.document_number,
        "ownership": _percent(member.ownership_bps),
    }


def _percent(basis_points: int | None) -> str:
    if basis_points is None:
        return ""
    whole, hundredths = divmod(basis_points, 100)
    return f"{whole}.{hundredths:02d} %" if hundredths else f"{whole} %"


def _document(
    document: Document, submission: Submission, lang: Lang, names: dict[str, str] | None = None
) -> dict[str, Any]:
    member = (names or {}).get(document.kind)
    kind = (
        lang.gettext(N_("Identity document of %(name)s")) % {"name": member}
        if member is not None
        else lang.gettext(KIND_NAMES.get(document.kind, document.kind))
    )
    return {
        "id": document.id,
        "kind": kind,
        "kind_code": document.kind,
        "image": document.content_type.startswith("image/"),
        "url": f"{PATH}/documents/{document.id}",
        "reused": document.submission_id != submission.id,
        "size_kb": max(1, document.size_bytes // 1024),
    }


@router.get("/kyc/documents/{document_id}")
def document_file(
    document_id: int,
    operator: ReviewerGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The decrypted document for the viewer (audited, never cached)."""
    document, data = service.open_document(
        session=session,
        operator=operator.user,
        document_id=document_id,
        vault=vault(settings),
        origin=origin_of(request),
    )
    return document_response(document, data)


@router.post("/kyc/{submission_id}/approve", response_class=HTMLResponse)
def approve(
    submission_id: int,
    operator: ReviewerGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    try:
        service.approve(
            session=session,
            reviewer=operator.user,
            submission_id=submission_id,
            origin=origin_of(request),
        )
    except DomainError as refused:
        return _refused(request, operator, session, settings.kyc, submission_id, refused)
    return _to(submission_id)


@router.post("/kyc/{submission_id}/reject", response_class=HTMLResponse)
def reject(
    submission_id: int,
    body: Annotated[RejectForm, Form()],
    operator: ReviewerGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    try:
        service.reject(
            session=session,
            reviewer=operator.user,
            submission_id=submission_id,
            reason=body.reason,
            origin=origin_of(request),
        )
    except DomainError as refused:
        return _refused(
            request, operator, session, settings.kyc, submission_id, refused, body.reason
        )
    return _to(submission_id)


def _refused(
    request: Request,
    operator: Operator,
    session: Session,
    settings: KycSettings,
    submission_id: int,
    refused: DomainError,
    reason: str = "",
) -> HTMLResponse:
    if refused.code == "kyc_submission_not_found":
        raise refused
    error = db.settle_refusal(session, refused)
    lang = lang_of(request)
    message = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL)) % {
        "max": service.REASON_CHARS_MAX
    }
    return _one(
        request,
        operator,
        session,
        settings,
        submission_id,
        error=message,
        reason=reason,
        status_code=error.status,
    )


def _to(submission_id: int) -> Response:
    return core.secure_headers(RedirectResponse(f"{PATH}/{submission_id}", status_code=303))
