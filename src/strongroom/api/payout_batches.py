"""Merchant settlements and batch payouts over HTTP (R-MERCH-3), beside the terminal API
(``/v1/merchant/...``, the same keys and members as ``api.merchants``):

- ``POST /v1/merchant/payout-batches``: a CSV (``text/csv`` body, or ``multipart/form-data``
  with the file in ``file``); roles with ``payout`` (owner, finance). Every row is checked
  before anything is stored: one bad row refuses the file (422 ``payout_file_invalid`` with
  ``details.errors``: one entry per problem, ``line``/``reference``/``field``/``code``/
  ``message``). A good file: 201 ``{id, status: "accepted"}``, executed by the worker (or
  ``strongroom merchants run-payout-batch``). Once per Idempotency-Key (the key is
  required: a retried upload must not pay a second time).
- ``GET /v1/merchant/payout-batches/{id}`` and ``.../result.csv`` (reference, status,
  payout_id, error): roles with ``payout``; another merchant's batch is 404.
- ``GET /v1/merchant/settlements`` (``read``) and ``.../{id}/report.csv`` (``export``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from strongroom.api import AssetsDep, IdempotencyKeyHeader, SessionDep, SettingsDep
from strongroom.api.merchants import ROLE_403, MovedOut, PrincipalDep
from strongroom.errors import DomainError
from strongroom.money import format_amount
from strongroom.movements import service as movements
from strongroom.movements.idempotency import Outcome
from strongroom.settlement import batch_payouts
from strongroom.settlement import service as settlement

router = APIRouter(prefix="/v1/merchant", tags=["merchant settlement and payouts"])

UPLOAD_MAX_BYTES: Final = 50_000_000


class MalformedUpload(DomainError):
    code = "malformed_upload"
    status = 400


class UnsupportedUpload(DomainError):
    code = "unsupported_media_type"
    status = 415


async def payout_file(request: Request) -> bytes:
    """The uploaded CSV: the body of a ``text/csv`` request, or the ``file`` part of a
    ``multipart/form-data`` one (``malformed_upload`` when it does not parse)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/csv", "text/plain", "application/csv"):
        body = await request.body()
        return body[: UPLOAD_MAX_BYTES + 1]
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=4)
        except (StarletteHTTPException, AssertionError, ValueError) as error:
            raise MalformedUpload("send the file as multipart/form-data") from error
        part = form.get("file")
        if isinstance(part, UploadFile):
            return await part.read(UPLOAD_MAX_BYTES + 1)
        if isinstance(part, str):
            return part.encode()
        raise MalformedUpload("the multipart body has no part named file", field="file")
    raise UnsupportedUpload(
        "send the payout file as text/csv or multipart/form-data", content_type=kind[:64]
    )


FileDep = Annotated[bytes, Depends(payout_file)]

UPLOAD_BODY: Final[dict[str, Any]] = {
    "required": True,
    "content": {
        "text/csv": {
            "schema": {
                "type": "string",
                "description": "header reference,holder_name,bank_code,account_number,asset,"
                "amount then one row per payout",
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
    },
}


class PayoutBatchOut(BaseModel):
    id: str
    merchant_id: str
    status: str
    asset: str
    rows: int
    total: str
    pending: int
    processing: int
    paid: int
    failed: int
    created_at: str
    completed_at: str | None


class SettlementOut(BaseModel):
    id: str
    business_day: str
    asset: str
    status: str
    charges: str
    refunds: str
    fees: str
    net: str
    paid_amount: str
    attempts: int
    charges_count: int
    refunds_count: int


class SettlementsOut(BaseModel):
    items: list[SettlementOut]


BATCH_404: Final[dict[int | str, dict[str, Any]]] = {
    401: ROLE_403[401],
    403: ROLE_403[403],
    404: {"description": "`payout_batch_not_found` (unknown, or another merchant's)"},
    422: ROLE_403[422],
}


@router.post(
    "/payout-batches",
    status_code=201,
    response_model=MovedOut,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        400: {"description": "`malformed_upload`"},
        401: ROLE_403[401],
        403: ROLE_403[403],
        409: {"description": "`idempotency_key_reused`, `idempotency_key_in_progress`"},
        415: {"description": "`unsupported_media_type`"},
        422: {
            "description": "`payout_file_invalid` (`details.errors`: line, reference, field, "
            "code, message), `payout_file_empty`, `payout_file_too_large`, "
            "`idempotency_key_required`, `merchant_id_required`"
        },
    },
)
def create_payout_batch(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    data: FileDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Upload a payout file (roles with ``payout``: owner, finance): every row validated
    before anything is stored; then executed row by row in the background."""
    principal.require("payout")
    merchant = principal.merchant

    def work(current: Any) -> Outcome:
        batch = batch_payouts.accept(
            session=current,
            merchant=merchant,
            data=data,
            settings=settings,
            actor=principal.actor,
        )
        return Outcome(id=batch.id, status=batch.status)

    outcome = movements.run_once(
        session=session,
        settings=settings,
        actor_id=merchant.id,
        operation=f"{request.method} {request.url.path}",
        key=idempotency_key,
        request={"file_sha256": hashlib.sha256(data).hexdigest()},
        work=work,
    )
    return JSONResponse(outcome.as_dict(), status_code=201)


@router.get("/payout-batches/{batch_id}", response_model=PayoutBatchOut, responses=BATCH_404)
def read_payout_batch(
    batch_id: Annotated[str, Path(min_length=1, max_length=32)],
    principal: PrincipalDep,
    session: SessionDep,
    registry: AssetsDep,
) -> PayoutBatchOut:
    """A payout batch and how many of its rows are pending, processing, paid, failed."""
    principal.require("payout")
    batch = batch_payouts.get_for(session=session, merchant=principal.merchant, batch_id=batch_id)
    tally = batch_payouts.counts(session, batch.id)
    return PayoutBatchOut(
        id=batch.id,
        merchant_id=batch.merchant_id,
        status=batch.status,
        asset=batch.asset,
        rows=batch.rows_count,
        total=format_amount(batch.total_minor, registry.get(batch.asset).scale),
        created_at=batch.created_at.isoformat(),
        completed_at=None if batch.completed_at is None else batch.completed_at.isoformat(),
        **tally,
    )


@router.get(
    "/payout-batches/{batch_id}/result.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **BATCH_404},
)
def payout_batch_result(
    batch_id: Annotated[str, Path(min_length=1, max_length=32)],
    principal: PrincipalDep,
    session: SessionDep,
) -> StreamingResponse:
    """The result file: reference, status (pending, processing, paid, failed), payout_id,
    error."""
    principal.require("payout")
    batch = batch_payouts.get_for(session=session, merchant=principal.merchant, batch_id=batch_id)
    lines: Iterator[str] = iter(list(batch_payouts.result_csv(session=session, batch=batch)))
    return StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{batch.id}-result.csv"'},
    )


@router.get("/settlements", response_model=SettlementsOut, responses=ROLE_403)
def list_settlements(
    principal: PrincipalDep, session: SessionDep, registry: AssetsDep
) -> SettlementsOut:
    """The merchant's settlements, newest business day first (the last 100)."""
    principal.require("read")
    items = []
    for row in settlement.list_for(session=session, merchant=principal.merchant):
        scale = registry.get(row.asset).scale
        items.append(
            SettlementOut(
                id=row.id,
                business_day=row.business_day.isoformat(),
                asset=row.asset,
                status=row.status,
                charges=format_amount(row.charges_minor, scale),
                refunds=format_amount(row.refunds_minor, scale),
                fees=format_amount(row.fees_minor, scale),
                net=format_amount(row.net_minor, scale),
                paid_amount=format_amount(row.amount_minor, scale),
                attempts=row.attempts,
                charges_count=row.charges_count,
                refunds_count=row.refunds_count,
            )
        )
    return SettlementsOut(items=items)


@router.get(
    "/settlements/{settlement_id}/report.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}},
        401: ROLE_403[401],
        403: ROLE_403[403],
        404: {"description": "`settlement_not_found` (unknown, or another merchant's)"},
        422: ROLE_403[422],
    },
)
def settlement_report(
    settlement_id: Annotated[str, Path(min_length=1, max_length=32)],
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> StreamingResponse:
    """A settlement's report (roles with ``export``): each charge and refund of the day, then
    the totals: charges, refunds, fees, net, paid."""
    principal.require("export")
    row = settlement.get_for(
        session=session, merchant=principal.merchant, settlement_id=settlement_id
    )
    lines: Iterator[str] = iter(
        list(
            settlement.report_csv(
                session=session,
                row=row,
                assets=registry,
                timezone=settings.settlement.timezone,
            )
        )
    )
    return StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{row.id}.csv"'},
    )
