"""Daily merchant settlement (R-MERCH-3). Services never commit: ``settle`` takes a session
factory and runs each step as its own unit of work (a payout's hold must be committed before
the bank is asked, and the answer written in another transaction).

A business day is a calendar day in the operator's time zone (``settlement.timezone``,
Asia/Hong_Kong by default). For each merchant with charges or refunds that day, ONE
settlement record (unique per merchant and day: a second run, or two runs at once, find it):

- ``charges`` = the day's charge amounts, ``fees`` = their discount-rate fees less the fee
  part of the day's refunds, ``refunds`` = the day's refund amounts, ``net`` = charges - fees -
  refunds (what the day added to the merchant's wallet).
- The payout is ``min(net, the wallet's available balance)``: money the merchant already paid
  out (a batch payout) is not paid twice; net ≤ 0 (refunds of earlier days) pays nothing
  (``nothing_due``: the debt stays on the wallet and later days' payouts are smaller).
- Paid through the payout connector to the merchant's settlement bank account (see
  ``settlement.payouts``): posted when the connector confirms; voided when it fails (the money
  back on the wallet, the record ``failed``, retried by the next run with a new attempt id).

Concurrency: records are taken ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) one at a time and the
merchant row is locked while its hold is written; the answer is written after re-reading the
record under lock, so two runs never post one hold twice or hold one day twice."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import insert_for, is_postgres, unit_of_work, utcnow
from strongroom.errors import NotFound, ValidationFailed
from strongroom.funding.connectors import PayoutConnector, PayoutStatus, SandboxPayoutConnector
from strongroom.ledger import service as ledger
from strongroom.merchants import service as merchants
from strongroom.merchants.models import Charge, Merchant, Refund
from strongroom.money import AssetRegistry, Money, format_amount
from strongroom.settings import SettlementSettings
from strongroom.settlement import payouts
from strongroom.settlement.models import Settlement

DUE = "due"
PROCESSING = "processing"
PAID = "paid"
FAILED = "failed"
NOTHING_DUE = "nothing_due"
OPEN = (DUE, PROCESSING, FAILED)


@dataclass(slots=True)
class Settled:
    """What one run did: records opened, payouts confirmed, failed, still waiting."""

    opened: int = 0
    paid: int = 0
    failed: int = 0
    waiting: int = 0
    nothing_due: int = 0
    ids: list[str] = field(default_factory=list)


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The business day as a [start, end) interval in UTC."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_day(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()


def due_day(now: datetime, settings: SettlementSettings) -> date | None:
    """The day the worker settles at ``now``: yesterday, once past the cut-off hour."""
    local = now.astimezone(ZoneInfo(settings.timezone))
    if local.hour < settings.cutoff_hour:
        return None
    return local.date() - timedelta(days=1)


def open_day(*, session: Session, day: date, settings: SettlementSettings, now: datetime) -> int:
    """Write the day's settlement records (one per merchant with activity; existing ones
    untouched). Refused for a day not over yet (``day_not_closed``). Returns how many were new."""
    start, end = day_bounds(day, settings.timezone)
    if now < end:
        raise ValidationFailed(
            f"business day {day.isoformat()} is not over yet in {settings.timezone}",
            code="day_not_closed",
            day=day.isoformat(),
        )
    totals: dict[str, dict[str, int]] = {}
    charged = session.execute(
        select(
            Charge.merchant_id,
            func.count(),
            func.coalesce(func.sum(Charge.amount_minor), 0),
            func.coalesce(func.sum(Charge.fee_minor), 0),
        )
        .where(Charge.created_at >= start, Charge.created_at < end)
        .group_by(Charge.merchant_id)
    )
    for merchant_id, count, amount, fee in charged:
        totals[merchant_id] = {
            "charges_count": int(count),
            "charges": int(amount),
            "fees": int(fee),
        }
    refunded = session.execute(
        select(
            Refund.merchant_id,
            func.count(),
            func.coalesce(func.sum(Refund.amount_minor), 0),
            func.coalesce(func.sum(Refund.fee_minor), 0),
        )
        .where(Refund.created_at >= start, Refund.created_at < end)
        .group_by(Refund.merchant_id)
    )
    for merchant_id, count, amount, fee in refunded:
        entry = totals.setdefault(merchant_id, {"charges_count": 0, "charges": 0, "fees": 0})
        entry.update(refunds_count=int(count), refunds=int(amount), refund_fees=int(fee))
    insert = insert_for(session)
    opened = 0
    for merchant_id in sorted(totals):
        merchant = session.get_one(Merchant, merchant_id)
        entry = totals[merchant_id]
        fees = entry["fees"] - entry.get("refund_fees", 0)
        refunds = entry.get("refunds", 0)
        values = {
            "id": "st_" + uuid.uuid4().hex[:16],
            "merchant_id": merchant_id,
            "business_day": day,
            "asset": merchants.currency_of(merchant),
            "charges_count": entry["charges_count"],
            "refunds_count": entry.get("refunds_count", 0),
            "charges_minor": entry["charges"],
            "refunds_minor": refunds,
            "fees_minor": fees,
            "net_minor": entry["charges"] - fees - refunds,
            "amount_minor": 0,
            "status": DUE,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        made = session.execute(
            insert(Settlement.__table__)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["merchant_id", "business_day"])
            .returning(Settlement.__table__.c.id)
        ).first()
        opened += made is not None
    return opened


def day_opened(*, session: Session, day: date) -> bool:
    """Whether ``day`` has settlement records (``open_day`` writes all of a day's at once)."""
    found = session.scalars(
        select(Settlement.id).where(Settlement.business_day == day).limit(1)
    ).first()
    return found is not None


def _next_open(
    session: Session, day: date | None, done: set[str], now: datetime, respect_backoff: bool
) -> Settlement | None:
    query = select(Settlement).where(Settlement.status.in_(OPEN)).order_by(Settlement.id)
    if day is not None:
        query = query.where(Settlement.business_day == day)
    if done:
        query = query.where(Settlement.id.not_in(done))
    if respect_backoff:
        query = query.where(Settlement.next_attempt_at <= now)
    query = query.limit(1)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).first()


def settle(
    factory: sessionmaker[Session],
    settings: SettlementSettings,
    assets: AssetRegistry,
    *,
    day: date | None,
    now: datetime | None = None,
    connector: PayoutConnector | None = None,
    limit: int | None = None,
    respect_backoff: bool = False,
) -> Settled:
    """Open ``day`` (if given) and pay its open records (or every open record when ``day`` is
    None: the worker's retries), at most ``limit`` of them."""
    connector = connector or SandboxPayoutConnector()
    now = now or utcnow()
    result = Settled()
    if day is not None:
        with unit_of_work(factory) as session:
            result.opened = open_day(session=session, day=day, settings=settings, now=now)
    done: set[str] = set()
    while limit is None or len(done) < limit:
        with unit_of_work(factory) as session:
            row = _next_open(session, day, done, now, respect_backoff)
            if row is None:
                break
            row_id = row.id
            done.add(row_id)
            step = _hold(session, row, assets, now)
            if step is None:
                result.nothing_due += 1
                continue
            payout_id, again, account_number, amount = step
        answer = payouts.ask(
            connector,
            payout_id=payout_id,
            account_number=account_number,
            amount=amount,
            again=again,
        )
        with unit_of_work(factory) as session:
            row = session.get_one(Settlement, row_id, with_for_update=True)
            if row.status != PROCESSING or row.payout_id != payout_id:
                continue  # another run answered it
            payouts.resolve(session=session, payout_id=payout_id, answer=answer)
            row.connector_reference = answer.reference
            if answer.status == PayoutStatus.PAID:
                row.status, row.paid_at, row.last_error = PAID, utcnow(), None
                result.paid += 1
                result.ids.append(row_id)
            elif answer.status == PayoutStatus.FAILED:
                row.status, row.last_error = FAILED, "the payout connector refused the payout"
                row.next_attempt_at = utcnow() + timedelta(seconds=settings.retry_after_s)
                result.failed += 1
            else:
                result.waiting += 1
    return result


def _hold(
    session: Session, row: Settlement, assets: AssetRegistry, now: datetime
) -> tuple[str, bool, str, Money] | None:
    """Under the record's lock: a hold for a due/failed record (None when nothing is due), or
    the existing hold of a processing one (asked again: ``poll``)."""
    merchant = merchants.get(session=session, merchant_id=row.merchant_id, lock=True)
    asset = assets.get(row.asset)
    if row.status == PROCESSING and row.payout_id is not None:
        return (
            row.payout_id,
            True,
            merchant.settlement_account_number,
            Money(row.amount_minor, asset),
        )
    source = merchants.account_id(session=session, merchant=merchant, asset=row.asset)
    available = ledger.balance(session=session, account_id=source, now=now).available_minor
    amount = min(row.net_minor, available)
    if amount <= 0:
        row.status, row.amount_minor = NOTHING_DUE, 0
        return None
    row.attempts += 1
    row.amount_minor = amount
    row.payout_id = f"settle.{row.id}.{row.attempts}"
    row.status = PROCESSING
    payouts.hold(
        session=session,
        payout_id=row.payout_id,
        source=source,
        asset=row.asset,
        amount_minor=amount,
        code="merchant_settlement",
    )
    return row.payout_id, False, merchant.settlement_account_number, Money(amount, asset)


def list_for(*, session: Session, merchant: Merchant, limit: int = 100) -> list[Settlement]:
    return list(
        session.scalars(
            select(Settlement)
            .where(Settlement.merchant_id == merchant.id)
            .order_by(Settlement.business_day.desc())
            .limit(limit)
        )
    )


def get_for(*, session: Session, merchant: Merchant, settlement_id: str) -> Settlement:
    row = session.get(Settlement, settlement_id)
    if row is None or row.merchant_id != merchant.id:
        raise NotFound("no such settlement", code="settlement_not_found")
    return row


REPORT_HEADER = ("kind", "id", "created_at", "amount", "fee", "net")


def report_csv(
    *, session: Session, row: Settlement, assets: AssetRegistry, timezone: str
) -> Iterator[str]:
    """A settlement's report: one line per charge and refund of the day, then the totals
    (charges, refunds, fees, net, paid)."""
    scale = assets.get(row.asset).scale
    start, end = day_bounds(row.business_day, timezone)

    def money(minor: int) -> str:
        return format_amount(minor, scale)

    yield _line(REPORT_HEADER)
    charges = session.scalars(
        select(Charge)
        .where(
            Charge.merchant_id == row.merchant_id,
            Charge.created_at >= start,
            Charge.created_at < end,
        )
        .order_by(Charge.created_at, Charge.seq)
    )
    for charge in charges:
        yield _line(
            (
                "charge",
                charge.id,
                charge.created_at.isoformat(),
                money(charge.amount_minor),
                money(charge.fee_minor),
                money(charge.amount_minor - charge.fee_minor),
            )
        )
    refunds = session.scalars(
        select(Refund)
        .where(
            Refund.merchant_id == row.merchant_id,
            Refund.created_at >= start,
            Refund.created_at < end,
        )
        .order_by(Refund.created_at, Refund.id)
    )
    for refund in refunds:
        yield _line(
            (
                "refund",
                refund.id,
                refund.created_at.isoformat(),
                money(-refund.amount_minor),
                money(-refund.fee_minor),
                money(refund.fee_minor - refund.amount_minor),
            )
        )
    yield _line(("total_charges", row.id, "", money(row.charges_minor), "", ""))
    yield _line(("total_refunds", row.id, "", money(-row.refunds_minor), "", ""))
    yield _line(("total_fees", row.id, "", "", money(row.fees_minor), ""))
    yield _line(("net", row.id, "", "", "", money(row.net_minor)))
    yield _line(("paid", row.id, row.status, money(row.amount_minor), "", ""))


def _line(values: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()
