"""Batch payouts from a CSV (R-MERCH-3): a merchant pays many bank accounts (suppliers,
staff) from its merchant wallet.

The file: a header ``reference,holder_name,bank_code,account_number,asset,amount`` then one
row per payout (UTF-8, comma-separated, at most ``settlement.payout_rows_max`` rows).
EVERY row is checked before anything is stored or moved: the reference (1-35 of
``A-Z a-z 0-9 - _ .``, unique in the file), the bank details (the formats of
``banking.check_details``), the asset (the merchant's currency), the amount (a positive
decimal with the asset's decimals) and the file's total against the wallet's available balance.
One bad row refuses the whole file (``payout_file_invalid``, 422) with every row's errors
(``errors``: line, reference, field, code, message) and nothing written.

A good file becomes a batch (``accepted``) with its rows; it is executed row by row (the
worker's sweep or ``strongroom merchants run-payout-batch ID``), each row through
``settlement.payouts`` with the id ``payout.<batch id>.<reference>``: a re-run (after a crash,
or two runs at once) finds the row's hold instead of making a second one, so each row is paid
at most once and, once the batch completes, exactly once or failed (voided, money back). A
row is held only while the wallet's available balance covers it (``insufficient_funds``
otherwise: the row fails, nothing held)."""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom.banking import service as banking
from strongroom.db import is_postgres, unit_of_work, utcnow
from strongroom.errors import DomainError, NotFound, ValidationFailed
from strongroom.funding.connectors import PayoutConnector, PayoutStatus, SandboxPayoutConnector
from strongroom.ledger import service as ledger
from strongroom.merchants import service as merchants
from strongroom.merchants.models import Merchant
from strongroom.money import AssetRegistry, Money, format_amount, parse_amount
from strongroom.settings import Settings
from strongroom.settlement import payouts
from strongroom.settlement.models import PayoutBatch, PayoutRow

COLUMNS: Final = ("reference", "holder_name", "bank_code", "account_number", "asset", "amount")
REFERENCE: Final = re.compile(r"[A-Za-z0-9._-]{1,35}")
RESULT_HEADER: Final = ("reference", "status", "payout_id", "error")
ERRORS_SHOWN_MAX: Final = 200


class PayoutFileInvalid(ValidationFailed):
    """The file is refused as a whole; ``errors`` says what is wrong with each bad row."""


@dataclass(frozen=True, slots=True)
class Checked:
    line: int
    reference: str
    holder_name: str
    bank_code: str
    account_number: str
    asset: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Ran:
    status: str
    paid: int
    failed: int
    waiting: int
    handled: int = 0


def payout_id(batch_id: str, reference: str) -> str:
    return f"payout.{batch_id}.{reference}"


def _problem(line: int, reference: str, field: str, code: str, message: str) -> dict[str, object]:
    return {"line": line, "reference": reference, "field": field, "code": code, "message": message}


def check_file(
    *, data: bytes, merchant: Merchant, settings: Settings, available_minor: int
) -> list[Checked]:
    """Every row checked; ``PayoutFileInvalid`` listing all the problems, or the rows."""
    limits = settings.settlement
    if len(data) > limits.payout_file_max_bytes:
        raise ValidationFailed(
            f"a payout file is at most {limits.payout_file_max_bytes} bytes",
            code="payout_file_too_large",
            max_bytes=limits.payout_file_max_bytes,
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("a payout file is UTF-8 text", code="payout_file_invalid") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise ValidationFailed(f"a payout file is CSV: {exc}", code="payout_file_invalid") from exc
    if not lines or tuple(cell.strip() for cell in lines[0]) != COLUMNS:
        raise ValidationFailed(
            "the first line must be the header " + ",".join(COLUMNS),
            code="payout_file_invalid",
            columns=list(COLUMNS),
        )
    body = lines[1:]
    if not body:
        raise ValidationFailed("a payout file has at least one row", code="payout_file_empty")
    if len(body) > limits.payout_rows_max:
        raise ValidationFailed(
            f"a payout file holds at most {limits.payout_rows_max} rows",
            code="payout_file_too_large",
            max_rows=limits.payout_rows_max,
        )
    currency = merchants.currency_of(merchant)
    scale = settings.asset_registry().get(currency).scale
    problems: list[dict[str, object]] = []
    checked: list[Checked] = []
    seen: set[str] = set()
    for number, cells in enumerate(body, start=2):
        if len(cells) != len(COLUMNS):
            problems.append(
                _problem(number, "", "row", "wrong_column_count", f"{len(COLUMNS)} columns")
            )
            continue
        reference, holder, bank_code, account, asset, amount = (c.strip() for c in cells)
        before = len(problems)
        if not REFERENCE.fullmatch(reference):
            problems.append(
                _problem(
                    number,
                    reference[:35],
                    "reference",
                    "invalid_reference",
                    "1-35 of A-Z a-z 0-9 . _ -",
                )
            )
        elif reference in seen:
            problems.append(
                _problem(number, reference, "reference", "duplicate_reference", "seen above")
            )
        seen.add(reference)
        code = number_ = ""
        try:
            code, number_ = banking.check_details(
                holder_name=holder,
                bank_code=bank_code,
                account_number=account,
                settings=settings.banking,
            )
        except DomainError as exc:
            field = str(exc.details.get("field", "")) or exc.code.removeprefix("invalid_")
            problems.append(_problem(number, reference[:35], field, exc.code, exc.message))
        if len(holder) > 140:
            problems.append(
                _problem(number, reference[:35], "holder_name", "invalid_holder_name", "≤ 140")
            )
        if asset != currency:
            problems.append(
                _problem(
                    number,
                    reference[:35],
                    "asset",
                    "wrong_asset",
                    f"this merchant pays out in {currency}",
                )
            )
        minor = 0
        try:
            minor = parse_amount(amount, scale)
        except DomainError as exc:
            problems.append(_problem(number, reference[:35], "amount", exc.code, exc.message))
        if len(problems) == before:
            checked.append(Checked(number, reference, holder, code, number_, asset, minor))
    total = sum(row.amount_minor for row in checked)
    if not problems and total > available_minor:
        problems.append(
            _problem(
                0,
                "",
                "amount",
                "insufficient_funds",
                f"the file pays {format_amount(total, scale)} {currency}; the wallet has "
                f"{format_amount(max(available_minor, 0), scale)} available",
            )
        )
    if problems:
        raise PayoutFileInvalid(
            f"the payout file has {len(problems)} problem(s); nothing was paid",
            code="payout_file_invalid",
            errors=problems[:ERRORS_SHOWN_MAX],
            errors_count=len(problems),
        )
    return checked


def accept(
    *, session: Session, merchant: Merchant, data: bytes, settings: Settings, actor: str
) -> PayoutBatch:
    """Check the file as a whole and store it as an ``accepted`` batch (nothing moves yet)."""
    currency = merchants.currency_of(merchant)
    source = merchants.account_id(session=session, merchant=merchant, asset=currency)
    available = ledger.balance(session=session, account_id=source).available_minor
    rows = check_file(data=data, merchant=merchant, settings=settings, available_minor=available)
    batch = PayoutBatch(
        id="pb_" + uuid.uuid4().hex[:16],
        merchant_id=merchant.id,
        asset=currency,
        rows_count=len(rows),
        total_minor=sum(r.amount_minor for r in rows),
        status="accepted",
        actor=actor,
        created_at=utcnow(),
    )
    session.add(batch)
    session.flush()
    session.add_all(
        PayoutRow(
            batch_id=batch.id,
            reference=row.reference,
            line=row.line,
            holder_name=row.holder_name,
            bank_code=row.bank_code,
            account_number=row.account_number,
            asset=row.asset,
            amount_minor=row.amount_minor,
            payout_id=payout_id(batch.id, row.reference),
            status="pending",
            updated_at=batch.created_at,
        )
        for row in rows
    )
    session.flush()
    return batch


def get_for(*, session: Session, merchant: Merchant, batch_id: str) -> PayoutBatch:
    found = session.get(PayoutBatch, batch_id) if len(batch_id) <= 32 else None
    if found is None or found.merchant_id != merchant.id:
        raise NotFound("no such payout batch", code="payout_batch_not_found")
    return found


def counts(session: Session, batch_id: str) -> dict[str, int]:
    rows = session.execute(
        select(PayoutRow.status, func.count())
        .where(PayoutRow.batch_id == batch_id)
        .group_by(PayoutRow.status)
    )
    found = {status: int(n) for status, n in rows}
    return {s: found.get(s, 0) for s in ("pending", "processing", "paid", "failed")}


def rows_of(session: Session, batch_id: str) -> list[PayoutRow]:
    return list(
        session.scalars(
            select(PayoutRow).where(PayoutRow.batch_id == batch_id).order_by(PayoutRow.line)
        )
    )


def result_csv(*, session: Session, batch: PayoutBatch) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(RESULT_HEADER)
    for row in rows_of(session, batch.id):
        writer.writerow((row.reference, row.status, row.payout_id, row.error or ""))
    yield buffer.getvalue()


def run_batch(
    factory: sessionmaker[Session],
    assets: AssetRegistry,
    *,
    batch_id: str,
    connector: PayoutConnector | None = None,
    limit: int | None = None,
    pause_s: float = 0.0,
    passes: int = 1,
) -> Ran:
    """Execute a batch's open rows (pending, or processing after a crash or a time-out), at
    most ``limit``; each row: hold (committed) → connector → post/void (committed). With
    ``passes`` > 1, rows the connector left unanswered (timed out) are polled again, up to
    that many passes over the batch."""
    connector = connector or SandboxPayoutConnector()
    with unit_of_work(factory) as session:
        batch = session.get(PayoutBatch, batch_id) if len(batch_id) <= 32 else None
        if batch is None:
            raise NotFound("no such payout batch", code="payout_batch_not_found")
        if batch.status == "accepted":
            batch.status = "running"
    handled = 0
    for _ in range(passes):
        done = _pass(factory, assets, batch_id, connector, limit, pause_s)
        handled += len(done)
        if not done:
            break
        if limit is not None:
            limit -= len(done)
            if limit <= 0:
                break
    with unit_of_work(factory) as session:
        batch = session.get_one(PayoutBatch, batch_id, with_for_update=True)
        tally = counts(session, batch_id)
        if tally["pending"] == 0 and tally["processing"] == 0 and batch.status != "completed":
            batch.status, batch.completed_at = "completed", utcnow()
        return Ran(batch.status, tally["paid"], tally["failed"], tally["processing"], handled)


def _pass(
    factory: sessionmaker[Session],
    assets: AssetRegistry,
    batch_id: str,
    connector: PayoutConnector,
    limit: int | None,
    pause_s: float,
) -> set[str]:
    """One pass over the batch's open rows; the references it handled."""
    done: set[str] = set()
    while limit is None or len(done) < limit:
        with unit_of_work(factory) as session:
            query = (
                select(PayoutRow)
                .where(
                    PayoutRow.batch_id == batch_id,
                    PayoutRow.status.in_(("pending", "processing")),
                )
                .order_by(PayoutRow.line)
                .limit(1)
            )
            if done:
                query = query.where(PayoutRow.reference.not_in(done))
            if is_postgres(session):
                query = query.with_for_update(skip_locked=True)
            row = session.scalars(query).first()
            if row is None:
                break
            reference = row.reference
            done.add(reference)
            again = row.status == "processing"
            if not again and not _hold(session, row):
                continue
            account, amount = row.account_number, Money(row.amount_minor, assets.get(row.asset))
            pid = row.payout_id
        answer = payouts.ask(
            connector, payout_id=pid, account_number=account, amount=amount, again=again
        )
        with unit_of_work(factory) as session:
            row = session.get_one(PayoutRow, (batch_id, reference), with_for_update=True)
            if row.status != "processing":
                continue  # another run answered it
            payouts.resolve(session=session, payout_id=pid, answer=answer)
            row.connector_reference = answer.reference
            row.updated_at = utcnow()
            if answer.status == PayoutStatus.PAID:
                row.status = "paid"
            elif answer.status == PayoutStatus.FAILED:
                row.status, row.error = "failed", "payout_failed"
        if pause_s:
            time.sleep(pause_s)
    return done


def _hold(session: Session, row: PayoutRow) -> bool:
    """Hold a pending row's amount (under the merchant's lock); False (row failed, nothing
    held) when the wallet's available balance no longer covers it, or when an operator
    suspended the merchant since the file was accepted (``merchant_suspended``)."""
    batch = session.get_one(PayoutBatch, row.batch_id)
    merchant = merchants.get(session=session, merchant_id=batch.merchant_id, lock=True)
    if merchant.status != merchants.ACTIVE:
        row.status, row.error, row.updated_at = "failed", "merchant_suspended", utcnow()
        return False
    source = merchants.account_id(session=session, merchant=merchant, asset=row.asset)
    if ledger.balance(session=session, account_id=source).available_minor < row.amount_minor:
        row.status, row.error, row.updated_at = "failed", "insufficient_funds", utcnow()
        return False
    payouts.hold(
        session=session,
        payout_id=row.payout_id,
        source=source,
        asset=row.asset,
        amount_minor=row.amount_minor,
        code="merchant_batch_payout",
    )
    row.status, row.updated_at = "processing", utcnow()
    return True


def due_batches(*, session: Session, limit: int) -> list[str]:
    """Batches the worker should run (accepted or running), oldest first."""
    return list(
        session.scalars(
            select(PayoutBatch.id)
            .where(PayoutBatch.status.in_(("accepted", "running")))
            .order_by(PayoutBatch.created_at)
            .limit(limit)
        )
    )


def list_for(*, session: Session, merchant: Merchant, limit: int = 20) -> list[PayoutBatch]:
    """A merchant's latest payout batches, newest first (the portal's list)."""
    return list(
        session.scalars(
            select(PayoutBatch)
            .where(PayoutBatch.merchant_id == merchant.id)
            .order_by(PayoutBatch.created_at.desc(), PayoutBatch.id.desc())
            .limit(limit)
        )
    )


def available_minor(*, session: Session, merchant: Merchant) -> int:
    """What the merchant's wallet may pay out now (its available balance)."""
    source = merchants.account_id(
        session=session, merchant=merchant, asset=merchants.currency_of(merchant)
    )
    return ledger.balance(session=session, account_id=source).available_minor
