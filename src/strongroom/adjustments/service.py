"""Manual ledger adjustments with maker-checker (R-SEC-10): nobody moves money by hand alone.

An operator whose role holds ``adjustments.propose`` (``identity.roles``) proposes a transfer:
debit account, credit account, asset, amount and a reason. Nothing moves. A *different*
operator whose role holds ``adjustments.approve`` approves it: only then does the transfer go
through ``ledger.service``, in the approver's unit of work, with the ledger's own checks (a
user's wallet never goes negative: its flags refuse it, and the adjustment stays pending). The
transfer's id is derived from the adjustment's (``adjustment:<id>``) and the row is locked and
must still be pending, so approving twice (a double click, two checkers at once) moves money
once. Rejecting needs the same capability; the proposer may reject (withdraw) their own
proposal, never approve it. Proposing, approving and rejecting are audit events in the same
transaction as the change; a refused self-approval is an audit event that stays (``db.keep``).

Services never commit: the request's unit of work does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strongroom import db
from strongroom import paging as cursors
from strongroom.adjustments.models import APPROVED, PENDING, REJECTED, STATUSES, Adjustment
from strongroom.errors import Conflict, Forbidden, NotFound, ValidationFailed, invariant
from strongroom.identity import audit, roles
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import LedgerError, TransferSpec, validate_spec
from strongroom.settings import LedgerLimits

CURSOR: Final = "adjustments"
TRANSFER_CODE: Final = "adjustment"
PAGE_MAX: Final = 500
REQUEST_KEY_CHARS_MAX: Final = 128
TEXT_CHARS_MAX: Final = 280
"""A reason, a rejection's note (the columns' size)."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the maker asks for (the amount already parsed to minor units)."""

    debit_account_id: int
    credit_account_id: int
    asset: str
    amount_minor: int
    reason: str

    def fingerprint(self) -> str:
        values = [
            self.debit_account_id,
            self.credit_account_id,
            self.asset,
            str(self.amount_minor),
            self.reason.strip(),
        ]
        return hashlib.sha256(json.dumps(values).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AdjustmentPage:
    items: list[Adjustment]
    next_cursor: str | None


def transfer_id_of(adjustment_id: int) -> str:
    return f"adjustment:{adjustment_id}"


# --------------------------------------------------------------------------- the maker


def propose(
    *,
    session: Session,
    proposer: User,
    proposal: Proposal,
    limits: LedgerLimits,
    request_key: str | None = None,
    origin: Origin = NOWHERE,
) -> Adjustment:
    """A pending adjustment. The same ``request_key`` from the same operator with the same
    values gives the adjustment it made the first time (``idempotency_key_reused`` with other
    values). Refused: ``forbidden`` (role), ``invalid_reason``, ``invalid_amount``,
    ``same_account``, ``account_not_found``, ``asset_mismatch``."""
    roles.require(proposer.operator_role, "adjustments.propose")
    reason = _checked(proposal, limits, session)
    if request_key is not None:
        _check_key(request_key)
        earlier = _by_request_key(session, proposer.id, request_key)
        if earlier is not None:
            return _replayed(earlier, proposal)
    row = Adjustment(
        debit_account_id=proposal.debit_account_id,
        credit_account_id=proposal.credit_account_id,
        asset=proposal.asset,
        amount_minor=proposal.amount_minor,
        reason=reason,
        status=PENDING,
        proposed_by=proposer.id,
        proposed_at=db.utcnow(),
        request_key=request_key,
        request_hash=proposal.fingerprint() if request_key is not None else None,
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # the same key, proposed at the same moment by another request
        earlier = _by_request_key(session, proposer.id, request_key or "")
        if earlier is None:
            raise
        return _replayed(earlier, proposal)
    _record(session, "adjustment.proposed", row, proposer, origin)
    return row


def _checked(proposal: Proposal, limits: LedgerLimits, session: Session) -> str:
    """The reason to store, once the proposal is one the ledger could apply."""
    reason = proposal.reason.strip()
    if not 0 < len(reason) <= TEXT_CHARS_MAX:
        raise ValidationFailed(
            f"a reason of 1-{TEXT_CHARS_MAX} characters is required",
            code="invalid_reason",
            max_chars=TEXT_CHARS_MAX,
        )
    validate_spec(
        _spec(proposal, None),
        timeout_max_s=limits.pending_timeout_max_s,
        note_max_chars=limits.note_max_chars,
    )
    for account_id in (proposal.debit_account_id, proposal.credit_account_id):
        account = ledger.get_account(session=session, account_id=account_id)
        if account.asset != proposal.asset:
            raise LedgerError(
                f"account {account_id} holds {account.asset}, not {proposal.asset}",
                code="asset_mismatch",
                account_id=account_id,
            )
    return reason


def _check_key(request_key: str) -> None:
    if not 0 < len(request_key) <= REQUEST_KEY_CHARS_MAX:
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{REQUEST_KEY_CHARS_MAX} characters",
            code="invalid_idempotency_key",
        )


def _by_request_key(session: Session, proposer_id: str, request_key: str) -> Adjustment | None:
    return session.scalars(
        select(Adjustment).where(
            Adjustment.proposed_by == proposer_id, Adjustment.request_key == request_key
        )
    ).first()


def _replayed(earlier: Adjustment, proposal: Proposal) -> Adjustment:
    if earlier.request_hash != proposal.fingerprint():
        raise Conflict(
            "this Idempotency-Key was used for another adjustment",
            code="idempotency_key_reused",
            adjustment_id=earlier.id,
        )
    return earlier


# --------------------------------------------------------------------------- the checker


def approve(
    *,
    session: Session,
    approver: User,
    adjustment_id: int,
    limits: LedgerLimits,
    origin: Origin = NOWHERE,
) -> Adjustment:
    """Apply a pending adjustment through the ledger, decided by ``approver``. Refused:
    ``forbidden`` (role), ``adjustment_not_found``, ``adjustment_not_pending`` (decided
    already: nothing moves again), ``own_adjustment`` (the maker may not check), and the
    ledger's refusals (``insufficient_funds``...), which leave it pending."""
    roles.require(approver.operator_role, "adjustments.approve")
    row = _locked(session, adjustment_id)
    if row.proposed_by == approver.id:
        _keep_refused_self_approval(session, row.id, approver.id, origin)
        raise Forbidden(
            "an adjustment is approved by another operator than the one who proposed it",
            code="own_adjustment",
            adjustment_id=row.id,
        )
    transfer_id = ledger.transfer(
        session=session, spec=_spec(row, transfer_id_of(row.id)), limits=limits
    )
    row.status, row.decided_by, row.decided_at = APPROVED, approver.id, db.utcnow()
    row.transfer_id = transfer_id
    session.flush()
    _record(session, "adjustment.approved", row, approver, origin)
    return row


def reject(
    *,
    session: Session,
    operator: User,
    adjustment_id: int,
    note: str | None,
    origin: Origin = NOWHERE,
) -> Adjustment:
    """Close a pending adjustment without moving money (a checker's no, or its proposer
    withdrawing it). Refused: ``forbidden``, ``adjustment_not_found``,
    ``adjustment_not_pending``, ``invalid_note``."""
    roles.require(operator.operator_role, "adjustments.approve")
    note = (note or "").strip() or None
    if note is not None and len(note) > TEXT_CHARS_MAX:
        raise ValidationFailed(
            f"a note is at most {TEXT_CHARS_MAX} characters", code="invalid_note"
        )
    row = _locked(session, adjustment_id)
    row.status, row.decided_by, row.decided_at = REJECTED, operator.id, db.utcnow()
    row.decision_note = note
    session.flush()
    _record(session, "adjustment.rejected", row, operator, origin)
    return row


def _locked(session: Session, adjustment_id: int) -> Adjustment:
    """The adjustment, locked for this transaction, while it is still pending."""
    row = session.get(Adjustment, adjustment_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no adjustment {adjustment_id}", code="adjustment_not_found")
    if row.status != PENDING:
        raise Conflict(
            f"adjustment {adjustment_id} is {row.status} already",
            code="adjustment_not_pending",
            status=row.status,
        )
    return row


def _keep_refused_self_approval(
    session: Session, adjustment_id: int, approver_id: str, origin: Origin
) -> None:
    def write(kept: Session) -> None:
        audit.record(
            session=kept,
            category=audit.OPERATOR,
            action="adjustment.self_approval_refused",
            actor=kept.get_one(User, approver_id),
            origin=origin,
            details={"adjustment_id": adjustment_id},
        )
        kept.flush()

    db.keep(session, write)


# --------------------------------------------------------------------------- reading


def get(*, session: Session, adjustment_id: int) -> Adjustment:
    row = session.get(Adjustment, adjustment_id)
    if row is None:
        raise NotFound(f"no adjustment {adjustment_id}", code="adjustment_not_found")
    return row


def search(
    *, session: Session, limit: int, status: str | None = None, cursor: str | None = None
) -> AdjustmentPage:
    """Newest first, of one ``status`` or all."""
    invariant(1 <= limit <= PAGE_MAX, "page size out of bounds")
    if status is not None and status not in STATUSES:
        raise ValidationFailed(
            f"status is one of {', '.join(STATUSES)}", code="invalid_status", statuses=STATUSES
        )
    query = select(Adjustment).order_by(Adjustment.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Adjustment.status == status)
    if cursor is not None:
        query = query.where(Adjustment.id < cursors.decode(CURSOR, cursor))
    rows = list(session.scalars(query))
    items = rows[:limit]
    more = len(rows) > limit
    return AdjustmentPage(
        items=items, next_cursor=cursors.encode(CURSOR, items[-1].id) if more else None
    )


# --------------------------------------------------------------------------- shared


def _spec(source: Proposal | Adjustment, transfer_id: str | None) -> TransferSpec:
    """The transfer an adjustment makes. Its reason stays with the adjustment (operators'
    words, not the user's statement): the transfer says only ``adjustment``."""
    return TransferSpec(
        debit_account_id=source.debit_account_id,
        credit_account_id=source.credit_account_id,
        asset=source.asset,
        amount_minor=source.amount_minor,
        id=transfer_id,
        code=TRANSFER_CODE,
    )


def _record(session: Session, action: str, row: Adjustment, actor: User, origin: Origin) -> None:
    details: dict[str, Any] = {
        "adjustment_id": row.id,
        "debit_account_id": row.debit_account_id,
        "credit_account_id": row.credit_account_id,
        "asset": row.asset,
        "amount_minor": str(row.amount_minor),
        "proposed_by": row.proposed_by,
    }
    if row.transfer_id is not None:
        details["transfer_id"] = row.transfer_id
    if row.decision_note is not None:
        details["note"] = row.decision_note
    audit.record(
        session=session,
        category=audit.OPERATOR,
        action=action,
        actor=actor,
        subject_user_id=_user_of(session, row),
        origin=origin,
        details=details,
    )


def _user_of(session: Session, row: Adjustment) -> str | None:
    """The user whose wallet the adjustment touches, if any (the audit event's subject)."""
    for account_id in (row.credit_account_id, row.debit_account_id):
        account = ledger.get_account(session=session, account_id=account_id)
        if account.owner_type == "user":
            return account.owner_id
    return None
