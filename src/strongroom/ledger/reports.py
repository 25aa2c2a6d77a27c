"""Statements with running balances (R-LEDGER-7) and the invariant check (R-LEDGER-5)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby, islice
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session, aliased

from strongroom.errors import ValidationFailed, invariant, present
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


# Rows fetched per round trip while the check streams (a server-side cursor on PostgreSQL): the
# check holds one chunk, one account's running totals and one total per asset, at any journal size.
CHECK_CHUNK_ROWS = 5000


def check(*, session: Session, chunk_rows: int = CHECK_CHUNK_ROWS) -> CheckReport:
    """Verify R-LEDGER-5: per asset debits equal credits; no account breaks its flags; every
    stored balance equals the sum of its entries; every running balance is right; every transfer
    has one debit and one credit entry that carry its asset, accounts and amount.

    Streams ``chunk_rows`` rows at a time. Each part of the check is one statement (accounts with
    their entries; transfers with theirs), so each sees one snapshot of a live ledger."""
    invariant(chunk_rows >= 1, "the check streams at least one row at a time")
    report = CheckReport()
    per_asset: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    rows = session.execute(_accounts_with_entries().execution_options(yield_per=chunk_rows))
    for _, account_rows in groupby(rows, key=lambda row: row.id):
        stored = _check_account(report, account_rows)
        for index, value in enumerate(stored.balances):
            per_asset[stored.asset][index] += value
    _check_asset_totals(report, per_asset)
    for (account_id,) in session.execute(_orphans(Entry.account_id, Account.id, chunk_rows)):
        report.add(f"entries reference account {account_id}, which does not exist")
    rows = session.execute(_transfers_with_entries().execution_options(yield_per=chunk_rows))
    for _, transfer_rows in groupby(rows, key=lambda row: row.id):
        _check_transfer(report, transfer_rows)
    for (transfer_id,) in session.execute(_orphans(Entry.transfer_id, Transfer.id, chunk_rows)):
        report.add(f"entries belong to transfer {transfer_id}, which does not exist")
    return report


@dataclass(frozen=True, slots=True)
class _Stored:
    asset: str
    balances: tuple[int, int, int, int]  # debits_posted, credits_posted, debits_pending, ...


def _accounts_with_entries() -> Select[*tuple[Any, ...]]:
    """Every account, each followed by its entries in id order (none: one row of NULLs)."""
    return (
        select(
            Account.id,
            Account.asset,
            Account.allow_negative,
            Account.negative_limit_minor,
            Account.debits_posted,
            Account.credits_posted,
            Account.debits_pending,
            Account.credits_pending,
            Entry.id.label("entry_id"),
            Entry.side,
            Entry.posted_minor,
            Entry.pending_minor,
            Entry.balance_after,
        )
        .outerjoin(Entry, Entry.account_id == Account.id)
        .order_by(Account.id, Entry.id)
    )


def _check_account(report: CheckReport, rows: Iterator[Row[Any]]) -> _Stored:
    """Sum one account's entries (checking each running balance) against its stored fields."""
    sums = [0, 0, 0, 0]
    last = None
    for last in rows:
        if last.entry_id is None:
            continue
        report.entries += 1
        offset = 0 if last.side == "D" else 1
        sums[offset] += last.posted_minor
        sums[2 + offset] += last.pending_minor
        if sums[1] - sums[0] != last.balance_after:
            report.add(
                f"entry {last.entry_id}: running balance {last.balance_after} but entries "
                f"sum to {sums[1] - sums[0]}"
            )
    account = present(last, "a group of rows has at least one row")
    report.accounts += 1
    stored = (
        account.debits_posted,
        account.credits_posted,
        account.debits_pending,
        account.credits_pending,
    )
    _check_account_fields(report, account, list(stored), sums)
    return _Stored(account.asset, stored)


def _check_account_fields(
    report: CheckReport, account: Row[Any], stored: list[int], sums: list[int]
) -> None:
    if stored != sums:
        report.add(
            f"account {account.id} ({account.asset}): stored balances {stored} but "
            f"entries sum to {sums}"
        )
    if any(value < 0 for value in stored):
        report.add(f"account {account.id}: a balance field is negative: {stored}")
    floor = -account.negative_limit_minor
    if not account.allow_negative and (
        account.credits_posted - account.debits_posted - account.debits_pending < floor
    ):
        report.add(f"account {account.id} ({account.asset}) is below its floor {floor}")


def _check_asset_totals(report: CheckReport, per_asset: dict[str, list[int]]) -> None:
    for asset, (dp, cp, dpn, cpn) in sorted(per_asset.items()):
        if dp != cp:
            report.add(f"{asset}: posted debits {dp} differ from posted credits {cp}")
        if dpn != cpn:
            report.add(f"{asset}: pending debits {dpn} differ from pending credits {cpn}")


def _orphans(reference: Any, target: Any, chunk_rows: int) -> Select[*tuple[Any, ...]]:
    """The distinct values of ``reference`` (an entry column) with no row at ``target``."""
    missing = ~select(target).where(target == reference).exists()
    query = select(reference).where(missing).group_by(reference).order_by(reference)
    return query.execution_options(yield_per=chunk_rows)


PENDING = aliased(Transfer)


def _transfers_with_entries() -> Select[*tuple[Any, ...]]:
    """Every transfer with the amount of the pending transfer it resolves, each followed by its
    entries (none: one row of NULLs)."""
    return (
        select(
            Transfer.id,
            Transfer.kind,
            Transfer.debit_account_id,
            Transfer.credit_account_id,
            Transfer.asset,
            Transfer.amount_minor,
            PENDING.amount_minor.label("pending_amount_minor"),
            Entry.side,
            Entry.account_id,
            Entry.posted_minor,
            Entry.pending_minor,
            Entry.asset.label("entry_asset"),
        )
        .outerjoin(PENDING, PENDING.id == Transfer.pending_id)
        .outerjoin(Entry, Entry.transfer_id == Transfer.id)
        .order_by(Transfer.id, Entry.side)
    )


def _check_transfer(report: CheckReport, rows: Iterator[Row[Any]]) -> None:
    first = next(rows)
    legs = sorted([first, *islice(rows, 2)] if first.side is not None else [], key=_side)
    found = len(legs) + sum(1 for _ in rows)  # a broken transfer's extra rows, not held
    report.transfers += 1
    if found != 2 or [leg.side for leg in legs] != ["C", "D"]:
        report.add(f"transfer {first.id}: expected one debit and one credit entry, found {found}")
        return
    credit, debit = legs
    if (debit.account_id, credit.account_id) != (first.debit_account_id, first.credit_account_id):
        report.add(f"transfer {first.id}: entries post to the wrong accounts")
    if _leg_amounts(debit) != _leg_amounts(credit) or debit.entry_asset != first.asset:
        report.add(f"transfer {first.id}: debit and credit entries do not balance")
    elif _leg_amounts(debit) != _expected_amounts(first):
        report.add(f"transfer {first.id}: entries do not carry its amount")
    if first.amount_minor <= 0:
        report.add(f"transfer {first.id}: amount is not positive")


def _side(leg: Row[Any]) -> str:
    return str(leg.side)


def _leg_amounts(leg: Row[Any]) -> tuple[int, int, str]:
    return (leg.posted_minor, leg.pending_minor, leg.entry_asset)


def _expected_amounts(transfer: Row[Any]) -> tuple[int, int, str] | None:
    """What each entry of ``transfer`` must carry (as ledger.service writes it and the database
    checks it): posted and pending amounts, asset. None for a kind the ledger does not know."""
    amount, asset = transfer.amount_minor, transfer.asset
    released = -(transfer.pending_amount_minor or 0)
    return {
        "posted": (amount, 0, asset),
        "pending": (0, amount, asset),
        "post_pending": (amount, released, asset),
        "void_pending": (0, -amount, asset),
    }.get(transfer.kind)
