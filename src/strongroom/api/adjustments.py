"""Manual ledger adjustments, maker-checker (R-SEC-10): ``/v1/admin/adjustments``.

One operator (a role holding ``adjustments.propose``: finance, admin) proposes; another (a
role holding ``adjustments.approve``, and never the proposer) approves, and only then does the
money move, through the ledger, once; or rejects. Thin: ``strongroom.adjustments.service``
decides, the request's unit of work commits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from strongroom.adjustments import service
from strongroom.adjustments.models import Adjustment
from strongroom.adjustments.schemas import AdjustmentIn, AdjustmentOut, AdjustmentsOut, RejectIn
from strongroom.api import (
    AssetsDep,
    IdempotencyKeyHeader,
    RowIdPath,
    SessionDep,
    SettingsDep,
    operator_with,
    origin_of,
)
from strongroom.identity.models import User
from strongroom.money import AssetRegistry, format_amount

router = APIRouter(prefix="/v1/admin/adjustments", tags=["operator"])
ReaderDep = Annotated[User, operator_with("adjustments")]
MakerDep = Annotated[User, operator_with("adjustments.propose")]
CheckerDep = Annotated[User, operator_with("adjustments.approve")]

REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token (`unauthorized`, `invalid_token`, `token_expired`)"},
    403: {
        "description": "a role without the capability (`forbidden`, `details.roles`: the roles "
        "that have it), an operator without 2FA (`two_factor_required`)"
    },
}
ONE: dict[int | str, dict[str, Any]] = {404: {"description": "`adjustment_not_found`"}}
DECIDED: dict[int | str, dict[str, Any]] = {
    409: {"description": "`adjustment_not_pending` (decided already; `details.status`)"}
}


@router.post(
    "",
    status_code=201,
    response_model=AdjustmentOut,
    responses={
        **REFUSED,
        400: {"description": "`malformed_json`"},
        404: {"description": "`account_not_found`"},
        409: {"description": "`idempotency_key_reused` (the key made another adjustment)"},
        422: {
            "description": "`invalid_amount`, `unknown_asset`, `same_account`, `asset_mismatch`, "
            "`invalid_reason`, `invalid_idempotency_key`, `validation_error`"
        },
    },
)
def propose(
    body: AdjustmentIn,
    request: Request,
    operator: MakerDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Propose a manual transfer (the maker). Nothing moves until another operator approves.
    With an ``Idempotency-Key``, sending the same proposal again answers the first one."""
    amount = registry.money(body.amount, body.asset)
    row = service.propose(
        session=session,
        proposer=operator,
        proposal=service.Proposal(
            debit_account_id=body.debit_account_id,
            credit_account_id=body.credit_account_id,
            asset=amount.asset.code,
            amount_minor=amount.amount_minor,
            reason=body.reason,
        ),
        limits=settings.ledger,
        request_key=idempotency_key,
        origin=origin_of(request),
    )
    return JSONResponse(adjustment_out(row, registry).model_dump(mode="json"), status_code=201)


@router.get(
    "",
    responses={**REFUSED, 422: {"description": "`invalid_status`, `invalid_cursor`"}},
)
def list_adjustments(
    operator: ReaderDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    status: Annotated[str | None, Query(pattern="^(pending|approved|rejected)$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> AdjustmentsOut:
    """Adjustments newest first, of one status or all."""
    size = min(limit or settings.ledger.page_size_default, service.PAGE_MAX)
    page = service.search(session=session, limit=size, status=status, cursor=cursor)
    return AdjustmentsOut(
        items=[adjustment_out(row, registry) for row in page.items], next_cursor=page.next_cursor
    )


@router.get("/{adjustment_id}", responses={**REFUSED, **ONE})
def get_adjustment(
    adjustment_id: RowIdPath, operator: ReaderDep, session: SessionDep, registry: AssetsDep
) -> AdjustmentOut:
    return adjustment_out(service.get(session=session, adjustment_id=adjustment_id), registry)


@router.post(
    "/{adjustment_id}/approve",
    responses={
        **REFUSED,
        **ONE,
        **DECIDED,
        403: {
            "description": "`own_adjustment` (the proposer may not approve), `forbidden`, "
            "`two_factor_required`"
        },
        422: {
            "description": "the ledger's refusal, the adjustment stays pending: "
            "`insufficient_funds` (a wallet never goes negative), `overflow`"
        },
    },
)
def approve(
    adjustment_id: RowIdPath,
    request: Request,
    operator: CheckerDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> AdjustmentOut:
    """Approve (the checker): the transfer goes through the ledger now, once."""
    row = service.approve(
        session=session,
        approver=operator,
        adjustment_id=adjustment_id,
        limits=settings.ledger,
        origin=origin_of(request),
    )
    return adjustment_out(row, registry)


@router.post(
    "/{adjustment_id}/reject",
    responses={
        **REFUSED,
        **ONE,
        **DECIDED,
        400: {"description": "`malformed_json`"},
        422: {"description": "`invalid_note`, `validation_error`"},
    },
)
def reject(
    adjustment_id: RowIdPath,
    request: Request,
    operator: CheckerDep,
    session: SessionDep,
    registry: AssetsDep,
    body: RejectIn | None = None,
) -> AdjustmentOut:
    """Reject (a checker), or withdraw (its proposer): closed, nothing moves."""
    row = service.reject(
        session=session,
        operator=operator,
        adjustment_id=adjustment_id,
        note=body.note if body is not None else None,
        origin=origin_of(request),
    )
    return adjustment_out(row, registry)


def adjustment_out(row: Adjustment, registry: AssetRegistry) -> AdjustmentOut:
    return AdjustmentOut(
        id=row.id,
        status=row.status,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        asset=row.asset,
        amount=format_amount(row.amount_minor, registry.get(row.asset).scale),
        reason=row.reason,
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        note=row.decision_note,
        transfer_id=row.transfer_id,
    )
