"""Manual ledger adjustments, maker-checker (R-SEC-10): list, propose, approve or reject.

``/console/adjustments`` lists them (pending first by default; finance and admin, the roles
holding ``adjustments``) with the form to propose one (``adjustments.propose``);
``/console/adjustments/<id>`` shows one with its decision, and to an operator holding
``adjustments.approve`` who did not propose it, the buttons to approve or reject it (its
proposer may only withdraw it). The pages call ``strongroom.adjustments.service`` exactly as
``/v1/admin/adjustments`` does, so the rules (never the proposer, money moves once, through
the ledger, on approval only) are the service's. Every form has its CSRF token (the console's
router) and the proposal form a fresh idempotency key per render: sending it twice proposes
once. After a change: 303 to the adjustment's page (POST, redirect, GET); a refusal shows the
page again with a sentence and the refusal's status, nothing written but the audit trail.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.adjustments import service
from strongroom.adjustments.models import PENDING, STATUSES, Adjustment
from strongroom.api import AssetsDep, SessionDep, SettingsDep, origin_of
from strongroom.errors import DomainError, NotFound
from strongroom.ledger import service as ledger
from strongroom.money import AssetRegistry
from strongroom.web import core
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import N_, Lang, lang_of

router = APIRouter(prefix=PREFIX)
PATH: Final = "/console/adjustments"
PAGE_SIZE: Final = 25
FIELD_MAX_CHARS: Final = 300
DEFAULT_ASSET: Final = "HKD"
ReaderGuard = Annotated[Operator, Depends(ConsoleGuard("adjustments"))]
MakerGuard = Annotated[Operator, Depends(ConsoleGuard("adjustments.propose"))]
CheckerGuard = Annotated[Operator, Depends(ConsoleGuard("adjustments.approve"))]

STATUS_NAMES: Final = {
    "pending": N_("Waiting for approval"),
    "approved": N_("Approved"),
    "rejected": N_("Rejected"),
}
REFUSALS: Final = {
    "own_adjustment": N_(
        "You proposed this adjustment: another operator must approve it. You may withdraw it."
    ),
    "adjustment_not_pending": N_("This adjustment was decided already. Nothing changed."),
    "insufficient_funds": N_(
        "The debit account does not hold enough: the adjustment stays pending, nothing moved."
    ),
    "account_not_found": N_("There is no ledger account with that number."),
    "asset_mismatch": N_("Both accounts must hold the asset of the adjustment."),
    "same_account": N_("The debit and the credit account must differ."),
    "invalid_amount": N_("Enter an amount greater than zero, with digits and a decimal point."),
    "unknown_asset": N_("Choose an asset from the list."),
    "invalid_reason": N_("Say why, in at most %(max)s characters."),
    "invalid_note": N_("The note is too long: at most %(max)s characters."),
    "idempotency_key_reused": N_(
        "This form was already sent with other values. Check the list before trying again."
    ),
    "overflow": N_("That amount is too large for these accounts."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


class ProposalForm(BaseModel):
    """The proposal form's fields, as typed (bounded before anything looks at them, P5)."""

    debit_account_id: str = Field(default="", max_length=20)
    credit_account_id: str = Field(default="", max_length=20)
    asset: str = Field(default="", max_length=16)
    amount: str = Field(default="", max_length=64)
    reason: str = Field(default="", max_length=FIELD_MAX_CHARS)
    idempotency_key: str = Field(default="", max_length=100)


class RejectForm(BaseModel):
    note: str = Field(default="", max_length=FIELD_MAX_CHARS)


@dataclass(frozen=True, slots=True)
class Row:
    """An adjustment as the pages show it (formatted for the reader's language)."""

    id: int
    status: str
    status_name: str
    debit: str
    credit: str
    amount: str
    asset: str
    reason: str
    proposed_by: str
    proposed_at: str
    decided_by: str
    decided_at: str
    note: str
    transfer_id: str
    own: bool


# --------------------------------------------------------------------------- the list


@router.get("/adjustments", response_class=HTMLResponse)
def adjustments_page(
    operator: ReaderGuard,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    status: Annotated[str, Query(pattern="^(|all|pending|approved|rejected)$")] = PENDING,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    return _list(request, operator, session, registry, status=status, cursor=cursor)


def _list(
    request: Request,
    operator: Operator,
    session: Session,
    registry: AssetRegistry,
    *,
    status: str = PENDING,
    cursor: str | None = None,
    form: ProposalForm | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    found = service.search(
        session=session,
        limit=PAGE_SIZE,
        status=status if status in STATUSES else None,
        cursor=cursor or None,
    )
    ledger.get_accounts(  # one read for the page's account labels (``_account_label``)
        session=session,
        account_ids=[i.debit_account_id for i in found.items]
        + [i.credit_account_id for i in found.items],
    )
    values: dict[str, Any] = {
        "rows": [_row(session, item, registry, lang, operator) for item in found.items],
        "next_cursor": found.next_cursor,
        "cursor": cursor,
        "status": status if status in STATUSES else "all",
        "statuses": list(STATUS_NAMES.items()),
        "may_propose": operator.may("adjustments.propose"),
        "form": form or ProposalForm(asset=DEFAULT_ASSET),
        "assets": [asset.code for asset in registry.all()],
        "key": secrets.token_urlsafe(24),
        "error": error,
    }
    return page(
        request,
        "console/adjustments.html",
        values,
        operator=operator,
        current=PATH,
        status_code=status_code,
    )


@router.post("/adjustments", response_class=HTMLResponse)
def propose(
    body: Annotated[ProposalForm, Form()],
    operator: MakerGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Propose (the maker); then to the adjustment's page, waiting for another operator."""
    try:
        amount = registry.money(body.amount.strip(), body.asset)
        row = service.propose(
            session=session,
            proposer=operator.user,
            proposal=service.Proposal(
                debit_account_id=_account_number(body.debit_account_id),
                credit_account_id=_account_number(body.credit_account_id),
                asset=amount.asset.code,
                amount_minor=amount.amount_minor,
                reason=body.reason,
            ),
            limits=settings.ledger,
            request_key=body.idempotency_key or None,
            origin=origin_of(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = _refusal(lang_of(request), error)
        return _list(
            request,
            operator,
            session,
            registry,
            form=body,
            error=message,
            status_code=error.status,
        )
    return _to(row.id)


def _account_number(text: str) -> int:
    text = text.strip().lstrip("#")
    if not text.isdigit() or len(text) > 18:
        raise NotFound("no such account", code="account_not_found")
    return int(text)


# --------------------------------------------------------------------------- one adjustment


@router.get("/adjustments/{adjustment_id}", response_class=HTMLResponse)
def adjustment_page(
    adjustment_id: int,
    operator: ReaderGuard,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> HTMLResponse:
    return _one(request, operator, session, registry, adjustment_id)


def _one(
    request: Request,
    operator: Operator,
    session: Session,
    registry: AssetRegistry,
    adjustment_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = service.get(session=session, adjustment_id=adjustment_id)
    row = _row(session, found, registry, lang_of(request), operator)
    may_decide = row.status == PENDING and operator.may("adjustments.approve")
    values = {
        "row": row,
        "may_approve": may_decide and not row.own,
        "may_reject": may_decide,
        "error": error,
    }
    return page(
        request,
        "console/adjustment.html",
        values,
        operator=operator,
        current=PATH,
        status_code=status_code,
    )


@router.post("/adjustments/{adjustment_id}/approve", response_class=HTMLResponse)
def approve(
    adjustment_id: int,
    operator: CheckerGuard,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Approve (the checker): the money moves now, through the ledger, once."""
    try:
        service.approve(
            session=session,
            approver=operator.user,
            adjustment_id=adjustment_id,
            limits=settings.ledger,
            origin=origin_of(request),
        )
    except DomainError as refused:
        return _refused(request, operator, session, registry, adjustment_id, refused)
    return _to(adjustment_id)


@router.post("/adjustments/{adjustment_id}/reject", response_class=HTMLResponse)
def reject(
    adjustment_id: int,
    body: Annotated[RejectForm, Form()],
    operator: CheckerGuard,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> Response:
    """Reject (a checker) or withdraw (its proposer): nothing moves."""
    try:
        service.reject(
            session=session,
            operator=operator.user,
            adjustment_id=adjustment_id,
            note=body.note,
            origin=origin_of(request),
        )
    except DomainError as refused:
        return _refused(request, operator, session, registry, adjustment_id, refused)
    return _to(adjustment_id)


def _refused(
    request: Request,
    operator: Operator,
    session: Session,
    registry: AssetRegistry,
    adjustment_id: int,
    refused: DomainError,
) -> HTMLResponse:
    """The adjustment's page again with the refusal (its kept audit trail committed); an
    adjustment that does not exist is the console's 404 page."""
    if refused.code == "adjustment_not_found":
        raise refused
    error = db.settle_refusal(session, refused)
    message = _refusal(lang_of(request), error)
    return _one(
        request,
        operator,
        session,
        registry,
        adjustment_id,
        error=message,
        status_code=error.status,
    )


def _to(adjustment_id: int) -> Response:
    return core.secure_headers(RedirectResponse(f"{PATH}/{adjustment_id}", status_code=303))


# --------------------------------------------------------------------------- shared


def _refusal(lang: Lang, error: DomainError) -> str:
    text = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL))
    if error.code in ("invalid_reason", "invalid_note"):
        return text % {"max": service.TEXT_CHARS_MAX}
    return text


def _row(
    session: Session, item: Adjustment, registry: AssetRegistry, lang: Lang, operator: Operator
) -> Row:
    scale = registry.get(item.asset).scale
    return Row(
        id=item.id,
        status=item.status,
        status_name=lang.gettext(STATUS_NAMES[item.status]),
        debit=_account_label(session, item.debit_account_id),
        credit=_account_label(session, item.credit_account_id),
        amount=lang.amount(item.amount_minor, scale),
        asset=item.asset,
        reason=item.reason,
        proposed_by=item.proposed_by,
        proposed_at=lang.when(item.proposed_at),
        decided_by=item.decided_by or "",
        decided_at=lang.when(item.decided_at) if item.decided_at is not None else "",
        note=item.decision_note or "",
        transfer_id=item.transfer_id or "",
        own=item.proposed_by == operator.user.id,
    )


def _account_label(session: Session, account_id: int) -> str:
    """``#id owner_type owner_id kind``: which account, at a glance."""
    account = ledger.get_account(session=session, account_id=account_id)
    return f"#{account.id} {account.owner_type} {account.owner_id} {account.kind}"
