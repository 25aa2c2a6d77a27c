"""``strongroom ledger reconcile`` for payouts: the ledger against the withdrawal records.

Every withdrawal has its pending transfer (``withdrawal:<id>``, its amount); a completed one has
exactly one post of that whole amount, a failed one exactly one void, a pending one neither; and
the reverse: every pending transfer of code ``withdrawal`` belongs to a withdrawal, so a post
always has a completed record. Both sides are read in streamed, joined queries (one pass each).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from strongroom.funding.reconcile import Breaks
from strongroom.ledger.domain import TransferKind
from strongroom.ledger.models import Transfer
from strongroom.withdrawals import service
from strongroom.withdrawals.models import Withdrawal

STREAM_ROWS: Final = 1000

EXPECTED: Final = {
    service.COMPLETED: TransferKind.POST_PENDING.value,
    service.FAILED: TransferKind.VOID_PENDING.value,
    service.PENDING: None,
}


@dataclass(frozen=True, slots=True)
class Break:
    kind: str
    withdrawal_id: str | None
    transfer_id: str | None
    detail: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "withdrawal_id": self.withdrawal_id,
            "transfer_id": self.transfer_id,
            "detail": self.detail,
        }


@dataclass(slots=True)
class PayoutReport(Breaks[Break]):
    withdrawals: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    withdrawal_transfers: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "withdrawals": self.withdrawals,
            "completed": self.completed,
            "failed": self.failed,
            "pending": self.pending,
            "withdrawal_transfers": self.withdrawal_transfers,
            "break_count": self.break_count,
            "breaks": [b.as_dict() for b in self.breaks],
        }


def reconcile_payouts(*, session: Session) -> PayoutReport:
    report = PayoutReport()
    for found in _records_side(session, report):
        report.add(found)
    for found in _ledger_side(session, report):
        report.add(found)
    return report


def _records_side(session: Session, report: PayoutReport) -> Iterator[Break]:
    pending = aliased(Transfer)
    resolution = aliased(Transfer)
    rows = session.execute(
        select(
            Withdrawal.id,
            Withdrawal.status,
            Withdrawal.amount_minor,
            Withdrawal.transfer_id,
            pending.id.label("pending_id"),
            pending.kind.label("pending_kind"),
            pending.amount_minor.label("pending_amount"),
            resolution.id.label("resolution_id"),
            resolution.kind.label("resolution_kind"),
            resolution.amount_minor.label("resolution_amount"),
        )
        .outerjoin(pending, pending.id == Withdrawal.transfer_id)
        .outerjoin(resolution, resolution.pending_id == Withdrawal.transfer_id)
        .order_by(Withdrawal.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    last: str | None = None
    for row in rows:
        if row.id == last:
            yield Break("resolved_twice", row.id, row.resolution_id, "a second resolution")
            continue
        last = row.id
        report.withdrawals += 1
        if row.status == service.COMPLETED:
            report.completed += 1
        elif row.status == service.FAILED:
            report.failed += 1
        else:
            report.pending += 1
        if row.pending_id is None or row.pending_kind != TransferKind.PENDING.value:
            yield Break("missing_transfer", row.id, row.transfer_id, "no pending transfer")
            continue
        if int(row.pending_amount) != int(row.amount_minor):
            yield Break(
                "amount_mismatch",
                row.id,
                row.pending_id,
                f"record {row.amount_minor}, transfer {row.pending_amount}",
            )
        expected = EXPECTED.get(row.status)
        if row.resolution_kind != expected:
            yield Break(
                f"{row.status}_but_{row.resolution_kind or 'unresolved'}",
                row.id,
                row.resolution_id or row.pending_id,
                f"status {row.status}, ledger {row.resolution_kind or 'pending'}",
            )
        elif expected == TransferKind.POST_PENDING.value and int(row.resolution_amount) != int(
            row.amount_minor
        ):
            yield Break(
                "posted_amount_mismatch",
                row.id,
                row.resolution_id,
                f"record {row.amount_minor}, posted {row.resolution_amount}",
            )


def _ledger_side(session: Session, report: PayoutReport) -> Iterator[Break]:
    rows = session.execute(
        select(Transfer.id, Withdrawal.id.label("withdrawal_id"))
        .outerjoin(Withdrawal, Withdrawal.transfer_id == Transfer.id)
        .where(
            Transfer.code == service.TRANSFER_CODE,
            Transfer.kind == TransferKind.PENDING.value,
        )
        .order_by(Transfer.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for row in rows:
        report.withdrawal_transfers += 1
        if row.withdrawal_id is None:
            yield Break(
                "transfer_without_withdrawal", None, row.id, "a withdrawal transfer, no record"
            )
