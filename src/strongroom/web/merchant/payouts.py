"""Batch payouts in the portal (R-MERCH-3): upload a CSV, see every row checked, confirm,
then follow the batch and download its result file.

Two steps, as the API's one: ``POST /merchant/payouts/check`` reads the upload and checks
EVERY row exactly as ``POST /v1/merchant/payout-batches`` does (``batch_payouts.check_file``,
against the wallet's available balance) and stores nothing: a bad file is refused as a whole
(422) with each row's problems; a good one is shown row by row with a confirm form that
carries the file's text. ``POST /merchant/payouts`` (the confirmation) checks it again and
stores the batch (``batch_payouts.accept``) once per form (``movements.run_once``, the form's
idempotency key scoped to the merchant): a double click makes one batch. The worker pays it
row by row, each row at most once; the batch's page shows how far it got.

Rights are ``merchants.roles``' ``payout`` (owner, finance): a manager or a cashier gets the
"not for your role" page; another merchant's batch is a 404, as in the API."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.errors import DomainError, ValidationFailed
from strongroom.merchants import service as merchants
from strongroom.money import AssetRegistry
from strongroom.movements import service as movements
from strongroom.movements.idempotency import Outcome
from strongroom.settings import Settings
from strongroom.settlement import batch_payouts
from strongroom.settlement.models import PayoutBatch, PayoutRow
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.merchant.layout import PREFIX, Member, guard, page

router = APIRouter(prefix=PREFIX)
PATH: Final = "/merchant/payouts"
CONFIRM_OPERATION: Final = "POST /merchant/payouts"
"""The idempotency scope of the confirm form (the file's digest is in the request it guards)."""
FILE_FIELD_MAX_CHARS: Final = 50_000_000
BatchIdPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^pb_[0-9a-f]+$")]
BATCH_STATUS: Final = {
    "accepted": N_("Waiting to be paid"),
    "running": N_("Being paid"),
    "completed": N_("Done"),
}
ROW_STATUS: Final = {
    "pending": N_("Waiting"),
    "processing": N_("Being paid"),
    "paid": N_("Paid"),
    "failed": N_("Failed"),
}
PROBLEMS: Final = {
    "wrong_column_count": N_("The row does not have the six columns of the header."),
    "invalid_reference": N_(
        "The reference must be 1 to 35 of A-Z, a-z, 0-9, dot, dash, underscore."
    ),
    "duplicate_reference": N_("This reference is used by an earlier row."),
    "invalid_bank_code": N_("The bank code is not a valid bank code (digits only)."),
    "invalid_account_number": N_("The account number is not a valid account number (digits only)."),
    "invalid_holder_name": N_("The account holder's name is missing or too long."),
    "wrong_asset": N_("The currency must be your shop's currency."),
    "invalid_amount": N_("The amount must be a positive amount such as 12.50."),
    "insufficient_funds": N_("The file pays more than your wallet holds now."),
    "payout_failed": N_("The bank refused this payout: the money is back in your wallet."),
    "merchant_suspended": N_("Not paid: your shop was suspended by the operator."),
}
FILE_REFUSALS: Final = {
    "payout_file_invalid": N_(
        "The file is not a payout file: it must be UTF-8 CSV whose first line is the header "
        "reference,holder_name,bank_code,account_number,asset,amount."
    ),
    "payout_file_empty": N_("The file has a header but no rows."),
    "payout_file_too_large": N_("The file is too large: at most %(max)s rows."),
    "payout_file_required": N_("Choose a CSV file to upload."),
    "idempotency_key_reused": N_("This form was already sent with another file: upload it again."),
    "idempotency_key_in_progress": N_("This file is being stored: look at the batches below."),
}
TOO_MANY_BYTES: Final = N_("The file is too large: at most %(max)s bytes.")
ROWS_INVALID: Final = N_(
    "Nothing was paid: the file has problems. Fix these rows and upload it again."
)
UNKNOWN_REFUSAL: Final = N_("That did not work. Check the file and try again.")
FIELD_NAMES: Final = {
    "reference": N_("Reference"),
    "holder_name": N_("Account holder"),
    "bank_code": N_("Bank code"),
    "account_number": N_("Account number"),
    "asset": N_("Currency"),
    "amount": N_("Amount"),
    "row": N_("Row"),
}


class MalformedUpload(ValidationFailed):
    code = "payout_file_required"


async def uploaded_file(request: Request) -> bytes | None:
    """The ``file`` part of the upload form; None without one (or not multipart), for the
    page to say so (``payout_file_required``)."""
    try:
        form = await request.form(max_files=1, max_fields=4)
    except (StarletteHTTPException, AssertionError, ValueError):
        return None
    part = form.get("file")
    if not isinstance(part, UploadFile):
        return None
    data = await part.read(FILE_FIELD_MAX_CHARS + 1)
    return data or None


class ConfirmForm(BaseModel):
    payout_file: str = Field(min_length=1, max_length=FILE_FIELD_MAX_CHARS)
    idempotency_key: str = Field(min_length=8, max_length=forms.FIELD_MAX_CHARS)


def _masked(number: str) -> str:
    return "····" + number[-4:]


def _problems(lang: Lang, error: DomainError) -> tuple[str, list[dict[str, Any]]]:
    """The file's refusal as a sentence and one line per row problem (translated)."""
    found = error.details.get("errors")
    if error.code == "payout_file_invalid" and isinstance(found, list):
        rows = [
            {
                "line": item.get("line") or "",
                "reference": item.get("reference", ""),
                "field": lang.gettext(FIELD_NAMES.get(str(item.get("field")), N_("Row"))),
                "code": item.get("code", ""),
                "message": lang.gettext(PROBLEMS[str(item.get("code"))])
                if str(item.get("code")) in PROBLEMS
                else str(item.get("message", "")),
            }
            for item in found
            if isinstance(item, dict)
        ]
        return lang.gettext(ROWS_INVALID), rows
    text = FILE_REFUSALS.get(error.code, UNKNOWN_REFUSAL)
    if error.code == "payout_file_too_large" and "max_bytes" in error.details:
        text = TOO_MANY_BYTES
    limit = error.details.get("max_rows", error.details.get("max_bytes", ""))
    return lang.gettext(text) % {"max": str(limit)} if "%(" in text else lang.gettext(text), []


def _batch_of(lang: Lang, batch: PayoutBatch, registry: AssetRegistry) -> dict[str, Any]:
    return {
        "id": batch.id,
        "when": lang.when(batch.created_at),
        "asset": batch.asset,
        "total": lang.amount(batch.total_minor, registry.get(batch.asset).scale),
        "rows": batch.rows_count,
        "status": batch.status,
        "status_name": BATCH_STATUS.get(batch.status, batch.status),
    }


def _row_of(lang: Lang, row: PayoutRow, registry: AssetRegistry) -> dict[str, Any]:
    error = row.error or ""
    return {
        "line": row.line,
        "reference": row.reference,
        "holder_name": row.holder_name,
        "bank_code": row.bank_code,
        "account": _masked(row.account_number),
        "amount": lang.amount(row.amount_minor, registry.get(row.asset).scale),
        "status": row.status,
        "status_name": ROW_STATUS.get(row.status, row.status),
        "error": lang.gettext(PROBLEMS[error]) if error in PROBLEMS else error,
    }


def _upload_page(
    request: Request,
    session: Session,
    registry: AssetRegistry,
    member: Member,
    *,
    error: str | None = None,
    problems: list[dict[str, Any]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    merchant = member.principal.merchant
    currency = merchants.currency_of(merchant)
    available = batch_payouts.available_minor(session=session, merchant=merchant)
    batches = batch_payouts.list_for(session=session, merchant=merchant)
    return page(
        request,
        "merchant/payouts.html",
        {
            "currency": currency,
            "available": lang.amount(available, registry.get(currency).scale),
            "batches": [_batch_of(lang, b, registry) for b in batches],
            "columns": ",".join(batch_payouts.COLUMNS),
            "error": error,
            "problems": problems or [],
        },
        member=member,
        current=PATH,
        status_code=status_code,
    )


@router.get("/payouts", response_class=HTMLResponse)
def payouts_page(
    request: Request, session: SessionDep, registry: AssetsDep, member: Member = guard("payout")
) -> HTMLResponse:
    return _upload_page(request, session, registry, member)


def _refused(
    request: Request,
    session: Session,
    registry: AssetRegistry,
    member: Member,
    refused: DomainError,
) -> HTMLResponse:
    error = db.settle_refusal(session, refused)
    text, problems = _problems(lang_of(request), error)
    return _upload_page(
        request, session, registry, member, error=text, problems=problems, status_code=error.status
    )


@router.post("/payouts/check", response_class=HTMLResponse)
def check(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    upload: Annotated[bytes | None, Depends(uploaded_file)],
    member: Member = guard("payout"),
) -> HTMLResponse:
    """Check every row of the uploaded file; nothing is stored. Good: the rows and a confirm
    form; bad: the whole file refused with each row's problems."""
    try:
        if upload is None:
            raise MalformedUpload("choose a CSV file")
        data = upload
        rows = _checked(session, settings, member, data)
    except DomainError as refused:
        return _refused(request, session, registry, member, refused)
    lang = lang_of(request)
    currency = merchants.currency_of(member.principal.merchant)
    scale = registry.get(currency).scale
    return page(
        request,
        "merchant/payouts_check.html",
        {
            "rows": [
                {
                    "line": row.line,
                    "reference": row.reference,
                    "holder_name": row.holder_name,
                    "bank_code": row.bank_code,
                    "account": row.account_number,  # the member's own file, to check
                    "amount": lang.amount(row.amount_minor, scale),
                }
                for row in rows
            ],
            "currency": currency,
            "total": lang.amount(sum(row.amount_minor for row in rows), scale),
            "count": len(rows),
            "payout_file": data.decode("utf-8-sig"),
            "idempotency_key": forms.new_key(),
        },
        member=member,
        current=PATH,
    )


def _checked(
    session: Session, settings: Settings, member: Member, data: bytes
) -> list[batch_payouts.Checked]:
    merchant = member.principal.merchant
    available = batch_payouts.available_minor(session=session, merchant=merchant)
    return batch_payouts.check_file(
        data=data, merchant=merchant, settings=settings, available_minor=available
    )


@router.post("/payouts", response_class=HTMLResponse)
def confirm(
    body: Annotated[ConfirmForm, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    member: Member = guard("payout"),
) -> Response:
    """Store the checked file as a batch (checked again: the wallet may have changed), once
    per form; then the batch's page."""
    merchant = member.principal.merchant
    data = body.payout_file.encode()

    def work(current: Session) -> Outcome:
        batch = batch_payouts.accept(
            session=current,
            merchant=merchant,
            data=data,
            settings=settings,
            actor=member.principal.actor,
        )
        return Outcome(id=batch.id, status=batch.status)

    try:
        outcome = movements.run_once(
            session=session,
            settings=settings,
            actor_id=merchant.id,
            operation=CONFIRM_OPERATION,
            key=body.idempotency_key,
            request={"file_sha256": hashlib.sha256(data).hexdigest()},
            work=work,
        )
    except DomainError as refused:
        return _refused(request, session, registry, member, refused)
    return core.secure_headers(RedirectResponse(f"{PATH}/{outcome.id}", status_code=303))


@router.get("/payouts/{batch_id}", response_class=HTMLResponse)
def batch_page(
    batch_id: BatchIdPath,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    member: Member = guard("payout"),
) -> HTMLResponse:
    """A batch: how many rows are waiting, being paid, paid, failed; each row's outcome."""
    lang = lang_of(request)
    batch = batch_payouts.get_for(
        session=session, merchant=member.principal.merchant, batch_id=batch_id
    )
    return page(
        request,
        "merchant/payout_batch.html",
        {
            "batch": _batch_of(lang, batch, registry),
            "counts": batch_payouts.counts(session, batch.id),
            "rows": [_row_of(lang, r, registry) for r in batch_payouts.rows_of(session, batch.id)],
        },
        member=member,
        current=PATH,
    )


@router.get("/payouts/{batch_id}/result.csv")
def batch_result(
    batch_id: BatchIdPath, session: SessionDep, member: Member = guard("payout")
) -> StreamingResponse:
    """The result file, as ``GET /v1/merchant/payout-batches/{id}/result.csv`` answers."""
    batch = batch_payouts.get_for(
        session=session, merchant=member.principal.merchant, batch_id=batch_id
    )
    lines: Iterator[str] = iter(list(batch_payouts.result_csv(session=session, batch=batch)))
    response = StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{batch.id}-result.csv"'},
    )
    core.secure_headers(response)
    return response
