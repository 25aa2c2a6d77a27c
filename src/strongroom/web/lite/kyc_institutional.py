"""Institutional verification (R-KYC-4, web only): ``/app/kyc/institutional``.

One form in sections: the organisation (name, registration number, country and date of
incorporation, type), its registered and principal business addresses, its members (one row
each: role, legal name, date of birth, nationality, ID document number, ownership % where it
applies, the identity document file), the board resolution and the ownership structure (with
downloadable templates for both, plain UTF-8 text in English and Traditional Chinese, served as
static files) and the declaration. ``app.js`` adds and removes member rows and shows the upload's
progress; without JavaScript the "Add a member" link opens the form with one row more
(``?members=N``), and the form posts as usual.

Member rows are named ``members-<i>-<field>``; the POST keeps the rows in the order of ``i``,
drops rows left entirely empty and numbers the rest from 1 (the numbers refusals name). It calls
``kyc.institutional.submit`` (the same checks by content and the same vault as personal KYC);
a refusal shows the form again with a sentence, what was typed (the files must be chosen again)
and the refusal's status, nothing stored. Then 303 to ``/app/kyc``, which lists it as waiting.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.api.kyc import MalformedForm, read_upload, vault
from strongroom.errors import DomainError, ValidationFailed
from strongroom.kyc import institutional
from strongroom.kyc.models import (
    BENEFICIAL_OWNER,
    BOARD_RESOLUTION,
    CONTROLLER,
    ORGANISATION_TYPES,
    OWNERSHIP_STRUCTURE,
    REPRESENTATIVE,
)
from strongroom.settings import KycSettings, Settings
from strongroom.web import core
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite.kyc import FIELD_NAMES as PERSONAL_FIELD_NAMES
from strongroom.web.lite.kyc import REFUSALS as PERSONAL_REFUSALS
from strongroom.web.lite.kyc import UNKNOWN_REFUSAL
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/kyc/institutional"
DONE_PATH: Final = "/app/kyc"
FIELD_MAX_CHARS: Final = 300
FIRST_ROWS: Final = 2
FORM_FIELDS_MAX: Final = 16 + 8 * institutional.MEMBERS_MAX
MEMBER_FIELD: Final = re.compile(r"members-(\d{1,4})-([a-z_]{1,32})")
ORGANISATION_FIELDS: Final = (
    "name",
    "registration_number",
    "incorporation_country",
    "incorporated_on",
    "organisation_type",
    "registered_address",
    "registered_country",
    "business_address",
    "business_country",
)
MEMBER_TEXT_FIELDS: Final = (
    "role",
    "legal_name",
    "date_of_birth",
    "nationality",
    "document_number",
    "ownership",
)
TEMPLATES: Final = {
    "board_resolution": {
        "en": "web/kyc/board-resolution-template.en.txt",
        "zh_Hant": "web/kyc/board-resolution-template.zh_Hant.txt",
    },
    "ownership_structure": {
        "en": "web/kyc/ownership-structure-template.en.txt",
        "zh_Hant": "web/kyc/ownership-structure-template.zh_Hant.txt",
    },
}

ORGANISATION_TYPE_NAMES: Final = {
    "company": N_("Company"),
    "partnership": N_("Partnership"),
    "trust": N_("Trust"),
    "foundation": N_("Foundation"),
    "other": N_("Other"),
}
ROLE_NAMES: Final = {
    REPRESENTATIVE: N_("Authorised representative"),
    CONTROLLER: N_("Person with significant control"),
    BENEFICIAL_OWNER: N_("Ultimate beneficial owner"),
}
REFUSALS: Final = {
    **PERSONAL_REFUSALS,
    "document_required": N_("Add the missing file."),
    "unexpected_document": N_("That file is not asked for."),
    "invalid_organisation_type": N_("Choose the type of organisation from the list."),
    "members_required": N_(
        "Name the organisation's members: its authorised representative at least."
    ),
    "too_many_members": N_("At most %(max_members)s members in one application."),
    "invalid_member_role": N_("Choose each member's role from the list."),
    "representative_required": N_("Name the organisation's authorised representative."),
    "representative_not_unique": N_("Exactly one member is the authorised representative."),
    "invalid_ownership": N_(
        "Ownership is a percentage from 0 to 100 with at most two decimals, "
        "above 0 for a beneficial owner."
    ),
    "ownership_over_whole": N_("The beneficial owners together hold more than 100 per cent."),
    "declaration_required": N_("Tick the declaration to submit."),
    "kyc_submission_pending": N_("Your organisation's application is waiting for review."),
    "kyc_tier_reached": N_("Your account is verified as an institution already."),
}
FIELD_NAMES: Final = {
    "name": N_("Name of the organisation"),
    "registration_number": N_("Registration number"),
    "incorporation_country": N_("Country or region of incorporation"),
    "incorporated_on": N_("Date of incorporation"),
    "organisation_type": N_("Type of organisation"),
    "registered_address": N_("Registered address"),
    "registered_country": N_("Country or region of the registered address"),
    "business_address": N_("Principal business address"),
    "business_country": N_("Country or region of the business address"),
    "board_resolution": N_("Board resolution"),
    "ownership_structure": N_("Ownership structure"),
    "declaration": N_("Declaration"),
}
MEMBER_FIELD_NAMES: Final = {
    "role": N_("Role"),
    "legal_name": PERSONAL_FIELD_NAMES["legal_name"],
    "date_of_birth": PERSONAL_FIELD_NAMES["date_of_birth"],
    "nationality": N_("Nationality"),
    "document_number": N_("ID document number"),
    "ownership": N_("Ownership (per cent)"),
    "document": N_("Identity document"),
}


async def institutional_form(request: Request) -> FormData:
    """The multipart body (``malformed_form`` when it does not parse)."""
    try:
        return await request.form(max_files=institutional.FILES_MAX, max_fields=FORM_FIELDS_MAX)
    except (StarletteHTTPException, AssertionError, ValueError) as error:
        raise MalformedForm("send the application as multipart/form-data") from error


InstitutionalFormDep = Annotated[FormData, Depends(institutional_form)]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:FIELD_MAX_CHARS] if isinstance(value, str) else ""


def _upload(form: FormData, name: str, settings: KycSettings) -> bytes:
    upload = form.get(name)
    return read_upload(upload, settings) if isinstance(upload, StarletteUploadFile) else b""


def parsed(
    form: FormData, settings: KycSettings
) -> tuple[institutional.InstitutionalApplication, dict[str, Any]]:
    """The application a form holds, and what was typed (to show the form again)."""
    typed: dict[str, Any] = {name: _text(form, name) for name in ORGANISATION_FIELDS}
    indices = sorted(
        {int(found.group(1)) for key in form if (found := MEMBER_FIELD.fullmatch(key))}
    )
    rows: list[dict[str, str]] = []
    members: list[institutional.MemberEntry] = []
    for index in indices:
        values = {
            name: _text(form, f"members-{index}-{name}").strip() for name in MEMBER_TEXT_FIELDS
        }
        document = _upload(form, f"members-{index}-document", settings)
        if not document and not any(value for key, value in values.items() if key != "role"):
            continue  # a row left empty (its role has a default)
        if len(members) == institutional.MEMBERS_MAX:
            raise ValidationFailed(
                f"at most {institutional.MEMBERS_MAX} members in one application",
                code="too_many_members",
                max_members=institutional.MEMBERS_MAX,
            )
        rows.append(values)
        members.append(
            institutional.MemberEntry(
                role=values["role"] or None,
                legal_name=values["legal_name"] or None,
                date_of_birth=values["date_of_birth"] or None,
                nationality=values["nationality"] or None,
                document_number=values["document_number"] or None,
                ownership=values["ownership"] or None,
                document=document,
            )
        )
    typed["members"] = rows
    typed["declaration"] = form.get("declaration") == "yes"
    files = {
        kind: data
        for kind in (BOARD_RESOLUTION, OWNERSHIP_STRUCTURE)
        if (data := _upload(form, kind, settings))
    }
    application = institutional.InstitutionalApplication(
        **{name: typed[name].strip() or None for name in ORGANISATION_FIELDS},
        declaration=typed["declaration"],
        members=members,
        files=files,
    )
    return application, typed


def _blank_member(role: str = "") -> dict[str, str]:
    return dict.fromkeys(MEMBER_TEXT_FIELDS, "") | {"role": role}


def _page(
    request: Request,
    user: SignedIn,
    settings: Settings,
    *,
    rows: int = FIRST_ROWS,
    values: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    typed = dict.fromkeys(ORGANISATION_FIELDS, "") | {"declaration": False} | (values or {})
    members = list(typed.get("members") or [])
    if not members:
        members = [_blank_member(REPRESENTATIVE)]
        members += [_blank_member(BENEFICIAL_OWNER) for _ in range(1, rows)]
    templates = {
        kind: [(language, core.static_url(path)) for language, path in by_language.items()]
        for kind, by_language in TEMPLATES.items()
    }
    context = {
        "tier": user.user.kyc_tier,
        "values": typed,
        "members": members,
        "blank_member": _blank_member(BENEFICIAL_OWNER),
        "next_rows": min(len(members) + 1, institutional.MEMBERS_MAX),
        "members_max": institutional.MEMBERS_MAX,
        "organisation_types": [
            (code, ORGANISATION_TYPE_NAMES[code]) for code in ORGANISATION_TYPES
        ],
        "roles": list(ROLE_NAMES.items()),
        "templates": templates,
        "language_names": {"en": "English", "zh_Hant": "繁體中文"},
        "error": error,
        "max_mb": settings.kyc.document_max_bytes // (1024 * 1024),
        "lang_code": lang.code,
    }
    return page(
        request,
        "lite/kyc_institutional.html",
        context,
        user=user,
        current=DONE_PATH,
        status_code=status_code,
    )


@router.get("/kyc/institutional", response_class=HTMLResponse)
def institutional_page(
    user: SignedInDep,
    request: Request,
    settings: SettingsDep,
    members: Annotated[int, Query(ge=1, le=institutional.MEMBERS_MAX)] = FIRST_ROWS,
) -> HTMLResponse:
    return _page(request, user, settings, rows=members)


@router.post("/kyc/institutional", response_class=HTMLResponse)
def submit(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    form: InstitutionalFormDep,
) -> Response:
    """Submit; then to ``/app/kyc``, which shows it waiting for review."""
    typed: dict[str, Any] = {}
    try:
        application, typed = parsed(form, settings.kyc)
        institutional.submit(
            session=session,
            user=user.user,
            application=application,
            settings=settings.kyc,
            vault=vault(settings),
            origin=origin_of(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        return _page(
            request,
            user,
            settings,
            values=typed,
            error=refusal_message(request, error, settings.kyc),
            status_code=error.status,
        )
    return core.secure_headers(RedirectResponse(DONE_PATH, status_code=303))


def refusal_message(request: Request, error: DomainError, settings: KycSettings) -> str:
    """The refusal's sentence, and the field it is about (``Member 2: Nationality``)."""
    lang = lang_of(request)
    message = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL)) % {
        "max_mb": settings.document_max_bytes // (1024 * 1024),
        "max_members": institutional.MEMBERS_MAX,
    }
    field = error.details.get("field")
    if not isinstance(field, str):
        return message
    if field in FIELD_NAMES:
        return f"{message} ({lang.gettext(FIELD_NAMES[field])})"
    found = MEMBER_FIELD.fullmatch(field)
    if found is not None and found.group(2) in MEMBER_FIELD_NAMES:
        member = lang.gettext(N_("Member %(number)s")) % {"number": found.group(1)}
        return f"{message} ({member}: {lang.gettext(MEMBER_FIELD_NAMES[found.group(2)])})"
    return message
