"""Statements with running balances (R-LEDGER-7) and the invariant check (R-LEDGER-5)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.errors import ValidationFailed
from strongroom.ledger.models import Account, Entry, Transfer
from strongroom.money import format_amount


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry_id: int
    transfer_id: str
    kind: str
    code: str
    note: str | None
    account_id: int
    counterparty_account_id: int
    asset: str
    side: str
    posted_minor: int
    pending_minor: int
    balance_after: int
    created_at: datetime

    @property
    def signed_minor(self) -> int:
        """The change to the posted total (credit-normal): credits in, debits out."""
        return self.posted_minor if self.side == "C" else -self.posted_minor


@dataclass(frozen=True, slots=True)
class StatementPage:
    lines: list[StatementLine]
    next_cursor: str | None


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise ValidationFailed("cursor is not one this API gave out", code="invalid_cursor")
    return int(cursor)


def statement(
    *, session: Session, account_ids: list[int], cursor: str | None, limit: int
) -> StatementPage:
    """Newest first. ``cursor`` is the ``next_cursor`` of the previous page."""
    before = parse_cursor(cursor)
    query = _lines_query(account_ids)
    if before is not None:
        query = query.where(Entry.id < before)
    rows = session.execute(query.order_by(Entry.id.desc()).limit(limit + 1)).all()
    lines = [_line(row) for row in rows[:limit]]
    next_cursor = str(lines[-1].entry_id) if len(rows) > limit and lines else None
    return StatementPage(lines, next_cursor)


def _lines_query(account_ids: list[int]):  # type: ignore[no-untyped-def]
    return (
        select(
            Entry,
            Transfer.kind,
            Transfer.code,
            Transfer.note,
            Transfer.debit_account_id,
            Transfer.credit_account_id,
        )
        .join(Transfer, Transfer.id == Entry.transfer_id)
        .where(Entry.account_id.in_(account_ids))
    )


def _line(row) -> StatementLine:  # type: ignore[no-untyped-def]
    entry: Entry = row[0]
    other = row.credit_account_id if entry.side == "D" else row.debit_account_id
    return StatementLine(
        entry_id=entry.id,
        transfer_id=entry.transfer_id,
        kind=row.kind,
        code=row.code,
        note=row.note,
        account_id=entry.account_id,
        counterparty_account_id=other,
        asset=entry.asset,
        side=entry.side,
        posted_minor=entry.posted_minor,
        pending_minor=entry.pending_minor,
        balance_after=entry.balance_after,
        created_at=entry.created_at,
    )


CSV_HEADER = (
    "entry_id",
    "created_at",
    "transfer_id",
    "kind",
    "code",
    "asset",
    "amount",
    "pending_change",
    "balance_after",
    "counterparty_account_id",
    "note",
)


def statement_csv(
    *, session: Session, account_ids: list[int], scales: dict[str, int], max_rows: int
) -> Iterator[str]:
    """The whole statement, oldest first, as CSV text chunks (bounded by ``max_rows``)."""
    query = _lines_query(account_ids).order_by(Entry.id).limit(max_rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for count, row in enumerate(session.execute(query.execution_options(yield_per=1000)), 1):
        line = _line(row)
        scale = scales[line.asset]
        writer.writerow(
            (
                line.entry_id,
                line.created_at.isoformat(),
                line.transfer_id,
                line.kind,
                line.code,
                line.asset,
                format_amount(line.signed_minor, scale),
                format_amount(line.pending_minor, scale),
                format_amount(line.balance_after, scale),
                line.counterparty_account_id,
                _csv_safe(line.note or ""),
            )
        )
        if count % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_safe(text: str) -> str:
    # A note starting with = + - @ would run as a formula in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --------------------------------------------------------------------------- check


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    accounts: int = 0
    entries: int = 0
    transfers: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str, limit: int = 1000) -> None:
        if len(self.problems) < limit:
            self.problems.append(problem)


def check(*, session: Session) -> CheckReport:
    """Verify R-LEDGER-5: per asset debits equal credits; no account breaks its flags; every
    stored balance equals the sum of its entries; every running balance is right; every transfer
    is balanced."""
    report = CheckReport()
    sums = _entry_sums(session, report)
    _check_accounts(session, report, sums)
    _check_transfers(session, report)
    return report


def _entry_sums(session: Session, report: CheckReport) -> dict[int, list[int]]:
    """Per account: [debits_posted, credits_posted, debits_pending, credits_pending]; also
    checks running balances, streaming entries in account, id order."""
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    query = select(
        Entry.account_id,
        Entry.id,
        Entry.side,
        Entry.posted_minor,
        Entry.pending_minor,
        Entry.balance_after,
    ).order_by(Entry.account_id, Entry.id)
    for account_id, entry_id, side, posted, pending, balance_after in session.execute(
        query.execution_options(yield_per=5000)
    ):
        report.entries += 1
        total = sums[account_id]
        offset = 0 if side == "D" else 1
        total[offset] += posted
        total[2 + offset] += pending
        if total[1] - total[0] != balance_after:
            report.add(
                f"entry {entry_id}: running balance {balance_after} but entries sum to "
                f"{total[1] - total[0]}"
            )
    return sums


def _check_accounts(session: Session, report: CheckReport, sums: dict[int, list[int]]) -> None:
    per_asset: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for account in session.execute(select(Account).execution_options(yield_per=5000)).scalars():
        report.accounts += 1
        stored = [
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        ]
        if stored != sums.get(account.id, [0, 0, 0, 0]):
            report.add(
                f"account {account.id} ({account.asset}): stored balances {stored} but "
                f"entries sum to {sums.get(account.id, [0, 0, 0, 0])}"
            )
        if any(value < 0 for value in stored):
            report.add(f"account {account.id}: a balance field is negative: {stored}")
        floor = -account.negative_limit_minor
        if not account.allow_negative and (
            account.credits_posted - account.debits_posted - account.debits_pending < floor
        ):
            report.add(f"account {account.id} ({account.asset}) is below its floor {floor}")
        for i, value in enumerate(stored):
            per_asset[account.asset][i] += value
    for asset, (dp, cp, dpn, cpn) in sorted(per_asset.items()):
        if dp != cp:
            report.add(f"{asset}: posted debits {dp} differ from posted credits {cp}")
        if dpn != cpn:
            report.add(f"{asset}: pending debits {dpn} differ from pending credits {cpn}")
    orphans = set(sums) - {a for a in session.execute(select(Account.id)).scalars()}
    for account_id in sorted(orphans):
        report.add(f"entries reference account {account_id}, which does not exist")


def _check_transfers(session: Session, report: CheckReport) -> None:
    legs: dict[str, list[tuple[str, int, int, int, str]]] = defaultdict(list)
    for transfer_id, side, account_id, posted, pending, asset in session.execute(
        select(
            Entry.transfer_id,
            Entry.side,
            Entry.account_id,
            Entry.posted_minor,
            Entry.pending_minor,
            Entry.asset,
        ).execution_options(yield_per=5000)
    ):
        legs[transfer_id].append((side, account_id, posted, pending, asset))
    for row in session.execute(select(Transfer).execution_options(yield_per=5000)).scalars():
        report.transfers += 1
        found = sorted(legs.pop(row.id, []))
        if len(found) != 2 or [leg[0] for leg in found] != ["C", "D"]:
            report.add(
                f"transfer {row.id}: expected one debit and one credit entry, found {len(found)}"
            )
            continue
        credit, debit = found
        if (debit[1], credit[1]) != (row.debit_account_id, row.credit_account_id):
            report.add(f"transfer {row.id}: entries post to the wrong accounts")
        if debit[2:] != credit[2:] or debit[4] != row.asset:
            report.add(f"transfer {row.id}: debit and credit entries do not balance")
        if row.amount_minor <= 0:
            report.add(f"transfer {row.id}: amount is not positive")
    for transfer_id in sorted(legs):
        report.add(f"entries belong to transfer {transfer_id}, which does not exist")
