"""Verify your identity (R-KYC-1..3, R-KYC-5): ``/app/kyc``.

The page shows the account's verification level and the user's submissions with their status
(waiting, approved, rejected with the reviewer's reason), and offers what may be applied for:
primary, or advanced directly (primary may be skipped). ``?level=primary|advanced`` opens the
form: the ID details and the photos (a file input with ``capture``, so a phone offers its
camera: the back camera for the document, the front one for the selfie). Advanced after an
approved primary asks only the document type, the selfie and the country of residence. After a
rejection the same level may be sent again. ``app.js`` sends the form with a progress bar; the
form works without JavaScript too.

The POST calls ``kyc.service.submit`` exactly as ``POST /v1/kyc/submissions`` does (the same
checks by content, the same vault); a refusal shows the form again with a sentence and the
refusal's status, nothing stored. Then 303 back to the page (POST, redirect, GET).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.api.kyc import TEXT_FIELDS, FormDep, application_from, vault
from strongroom.errors import DomainError
from strongroom.identity.models import User
from strongroom.kyc import service
from strongroom.kyc.models import (
    ADVANCED,
    DOCUMENT_TYPES,
    INSTITUTIONAL,
    PENDING,
    PRIMARY,
    Submission,
)
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/kyc"
FIELD_MAX_CHARS: Final = 300

TIER_NAMES: Final = {
    "unverified": N_("Not verified"),
    "primary": N_("Primary"),
    "advanced": N_("Advanced"),
    "institutional": N_("Institutional"),
}
STATUS_NAMES: Final = {
    "pending": N_("Waiting for review"),
    "approved": N_("Approved"),
    "rejected": N_("Rejected"),
}
DOCUMENT_TYPE_NAMES: Final = {
    "id_card": N_("Identity card"),
    "passport": N_("Passport"),
    "driving_licence": N_("Driving licence"),
}
REFUSALS: Final = {
    "document_too_large": N_("A file is too large: at most %(max_mb)s MB each."),
    "unsupported_document_type": N_("Send a photo (JPEG or PNG) or a PDF."),
    "invalid_document": N_("A file could not be read as a photo or a PDF. Try another one."),
    "document_required": N_("Add the missing photo."),
    "unexpected_document": N_("That photo is not asked for at this level."),
    "missing_field": N_("Fill in every field."),
    "invalid_field": N_("Check the fields: something is not in the expected form."),
    "invalid_document_type": N_("Choose a document type from the list."),
    "invalid_level": N_("Choose primary or advanced."),
    "kyc_submission_pending": N_("You have a submission of this level waiting for review."),
    "kyc_tier_reached": N_("Your account is verified at this level already."),
    "payload_too_large": N_("The files are too large together. Send smaller photos."),
}
FIELD_NAMES: Final = {
    "front": N_("Front of the document"),
    "back": N_("Back of the document"),
    "selfie": N_("Selfie"),
    "document_type": N_("Document type"),
    "document_country": N_("Country or region of the document"),
    "legal_name": N_("Legal name"),
    "document_number": N_("Document number"),
    "date_of_birth": N_("Date of birth"),
    "residence_country": N_("Country or region of residence"),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


def _options(session: Session, user: User) -> dict[str, Any]:
    """What the user may apply for now, and what advanced would reuse."""
    history = service.history(session=session, user=user, limit=20)
    pending = {row.level for row in history if row.status == PENDING}
    rank = service.TIER_RANK.get(user.kyc_tier, 3)
    primary = service.approved_primary(session, user.id)
    return {
        "history": history,
        "may": {
            PRIMARY: rank < 1 and PRIMARY not in pending,
            ADVANCED: rank < 2 and ADVANCED not in pending,
            INSTITUTIONAL: rank < 3 and INSTITUTIONAL not in pending,
        },
        "reuse": primary,
    }


def _page(
    request: Request,
    user: SignedIn,
    session: Session,
    settings: Settings,
    *,
    level: str | None,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    options = _options(session, user.user)
    form_level = level if level in (PRIMARY, ADVANCED) and options["may"][level] else None
    context = {
        "tier": user.user.kyc_tier,
        "tier_name": lang.gettext(TIER_NAMES.get(user.user.kyc_tier, user.user.kyc_tier)),
        "rows": [_row(row, lang) for row in options["history"]],
        "may": options["may"],
        "level": form_level,
        "reuse": options["reuse"] if form_level == ADVANCED else None,
        "document_types": [(code, DOCUMENT_TYPE_NAMES[code]) for code in DOCUMENT_TYPES],
        "values": dict.fromkeys(TEXT_FIELDS, "") | (values or {}),
        "error": error,
        "max_mb": settings.kyc.document_max_bytes // (1024 * 1024),
    }
    return page(request, "lite/kyc.html", context, user=user, current=PATH, status_code=status_code)


def _row(row: Submission, lang: Lang) -> dict[str, Any]:
    return {
        "id": row.id,
        "level": lang.gettext(TIER_NAMES.get(row.level, row.level)),
        "level_code": row.level,
        "status": row.status,
        "status_name": lang.gettext(STATUS_NAMES[row.status]),
        "reason": row.reason,
        "submitted_at": lang.when(row.created_at),
    }


@router.get("/kyc", response_class=HTMLResponse)
def kyc_page(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    level: Annotated[str | None, Query(max_length=16)] = None,
) -> HTMLResponse:
    return _page(request, user, session, settings, level=level)


@router.post("/kyc", response_class=HTMLResponse)
def submit(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    form: FormDep,
) -> Response:
    """Submit; then back to the page, which shows it waiting for review."""
    typed = {
        name: value[:FIELD_MAX_CHARS] if isinstance(value := form.get(name), str) else ""
        for name in TEXT_FIELDS
    }
    try:
        service.submit(
            session=session,
            user=user.user,
            application=application_from(form, settings.kyc),
            settings=settings.kyc,
            vault=vault(settings),
            origin=origin_of(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        lang = lang_of(request)
        message = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL)) % {
            "max_mb": settings.kyc.document_max_bytes // (1024 * 1024)
        }
        field = error.details.get("field")
        if isinstance(field, str) and field in FIELD_NAMES:
            message = f"{message} ({lang.gettext(FIELD_NAMES[field])})"
        return _page(
            request,
            user,
            session,
            settings,
            level=typed["level"],
            values=typed,
            error=message,
            status_code=error.status,
        )
    return core.secure_headers(RedirectResponse(PATH, status_code=303))
