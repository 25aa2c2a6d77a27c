"""The limits engine: "may this user do this operation of this amount now?" (R-LIMIT-1,
R-KYC-6, R-TN-2), for every operation kind, from the tier table in settings and the journal.

Two calls, one set of rules (``limits.rules``):

- ``check`` at request time, before anything is written (no wallet opened): a fast refusal;
- ``guard``, carried by the ``TransferSpec`` (``ledger.domain``: guards): the same rules
  again inside the transaction that applies the transfer, after the ledger locked the
  accounts. It takes a
  per-user transaction lock (PostgreSQL advisory locks, in ascending key order, after the
  accounts), reads every guarded user's windows of the batch in ONE statement, and counts the
  batch's earlier transfers in memory, so concurrent requests cannot together exceed a limit
  even when they land in different batches or in one.

Windows are read from ``ledger_transfers`` (indexes on (debit_account_id, code, created_at) and
(credit_account_id, code, created_at), migration 0012): one statement per check however long
the history, never counters. A refusal's ``frees_at`` reads the refused window's transfers
(a second statement, only on that path).

A user's own calls outside a batch (``ledger.transfer`` with a guard in a unit of work) are
guarded the same way; one transaction should not hold a guard's user lock and then ask the
ledger for more accounts (the order is accounts, then users).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import DomainError
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import (
    GuardChecker,
    Guarded,
    GuardRun,
    TransferKind,
    TransferSpec,
    Unlock,
)
from strongroom.ledger.models import Account, Transfer
from strongroom.limits.rules import (
    BTC,
    COUNT,
    CREDIT,
    DAY,
    DEBIT,
    JOURNAL,
    RESTRICTED,
    YEAR,
    Operation,
    Prices,
    PriceSource,
    Refusal,
    Sums,
    decide,
    fraction_of,
    frees_at,
    hold_hours,
    locked_refusal,
    reads_balance,
    reads_windows,
    require_tier,
    shown,
)
from strongroom.money import Money
from strongroom.settings import Settings, TierLimits

TRANSFERS = cast(Table, Transfer.__table__)
ACCOUNTS = cast(Table, Account.__table__)
COUNTED_KINDS = (TransferKind.POSTED.value, TransferKind.PENDING.value)


ReferenceLoader = Callable[[Session], PriceSource]
"""Reads the operator's reference rates once (one statement), for one check or batch."""
_REFERENCE: list[ReferenceLoader] = []


def use_reference_prices(loader: ReferenceLoader | None) -> None:
    """Value amounts at the rates ``loader`` reads, settings ``limits.prices`` as the fallback
    (None: settings only). ``strongroom.fx.service`` registers the operator's mid rates when
    it is imported (the API and the web app import it): limits is below fx, so fx plugs in."""
    _REFERENCE.clear()
    if loader is not None:
        _REFERENCE.append(loader)


def prices_of(settings: Settings, session: Session | None = None) -> Prices:
    """The reference prices of one check: the registered source's rates read in ``session``
    (when given), else the settings'."""
    source = _Lazy(_REFERENCE[0], session) if _REFERENCE and session is not None else None
    return Prices(settings.limits, {a.code: a.scale for a in settings.assets}, source)


class _Lazy:
    """A price source read on its first use (a check valued in its own unit reads nothing)."""

    def __init__(self, loader: ReferenceLoader, session: Session) -> None:
        self.loader, self.session = loader, session
        self.loaded: PriceSource | None = None

    def rate(self, from_code: str, to_code: str) -> Fraction | None:
        if self.loaded is None:
            self.loaded = self.loader(self.session)
        return self.loaded.rate(from_code, to_code)


# --------------------------------------------------------------------------- request time


def check(
    *,
    session: Session,
    user: User,
    operation: Operation,
    amount: Money,
    settings: Settings,
    account_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Refuse ``operation`` of ``amount`` by ``user`` now, or return: ``kyc_required``
    ``{required_tier}``, ``funds_locked`` ``{asset, locked, unlocks_at}`` (a restricted
    operation from ``account_id``, the wallet it debits, when the amount fits the balance but
    not what is unlocked), ``limit_exceeded`` ``{limit, limit_amount, left, frees_at}``.
    Reads only."""
    now = now or utcnow()
    require_tier(user.kyc_tier, operation)
    asset = amount.asset.code
    if operation in RESTRICTED and account_id is not None:
        balance = ledger.balance(session=session, account_id=account_id, now=now)
        refused = locked_refusal(
            asset=asset,
            scale=amount.asset.scale,
            room=balance.total_minor - balance.pending_minor,
            amount_minor=amount.amount_minor,
            lots=balance.unlocks,
            now=now,
        )
        if refused is not None:
            raise refused
    row = settings.limits.tier(user.kyc_tier)
    prices = prices_of(settings, session)
    used = (
        window_sums(session=session, user_ids=[user.id], now=now, prices=prices)
        if reads_windows(row, operation)
        else {}
    )
    fiat = (
        fiat_balances(session=session, user_ids=[user.id], prices=prices).get(user.id, {})
        if reads_balance(row, operation)
        else None
    )
    refusal = decide(
        row=row,
        operation=operation,
        asset=asset,
        amount_minor=amount.amount_minor,
        used=used.get((user.id, operation), Sums()),
        prices=prices,
        fiat_balance=fiat,
    )
    if refusal is not None:
        raise _refusal_error(session, refusal, user.id, operation, prices, now, ())


# --------------------------------------------------------------------------- the guard


@dataclass(frozen=True, slots=True)
class LimitGuard:
    """The limits rules for one transfer, checked by the ledger in the applying transaction."""

    user_id: str
    tier: str
    operation: Operation
    settings: Settings = field(compare=False, repr=False)

    @property
    def checker(self) -> GuardChecker:
        return CHECKER


def guard(*, user: User, operation: Operation, settings: Settings) -> LimitGuard:
    """The guard to put on the ``TransferSpec`` of ``user``'s ``operation``
    (``TransferSpec(..., guard=limits.guard(...))``)."""
    return LimitGuard(user_id=user.id, tier=user.kyc_tier, operation=operation, settings=settings)


class _Checker:
    def begin(
        self,
        session: Session,
        guarded: Sequence[TransferSpec],
        now: datetime,
        locks_until: Mapping[int, datetime],
    ) -> GuardRun:
        return _Run(session, guarded, now, locks_until)


CHECKER: GuardChecker = _Checker()


class _Run:
    """One batch's limits: locks, windows, locked lots and fiat balances read once, then the
    batch's accepted transfers counted in memory."""

    def __init__(
        self,
        session: Session,
        specs: Sequence[TransferSpec],
        now: datetime,
        locks_until: Mapping[int, datetime],
    ) -> None:
        guards = [_limit_guard(spec) for spec in specs]
        self.session = session
        self.now = now
        self.settings = guards[0].settings
        self.prices = prices_of(self.settings, session)
        windowed = {g.user_id for g in guards if reads_windows(_row(g), g.operation)}
        topping_up = {g.user_id for g in guards if reads_balance(_row(g), g.operation)}
        # a user's limits span all of their wallets: lock the user, not only the accounts
        lock_users(session, sorted(windowed | topping_up))
        self.used = window_sums(
            session=session, user_ids=sorted(windowed), now=now, prices=self.prices
        )
        self.batch: dict[tuple[str, Operation], list[tuple[str, int]]] = {}
        self.fiat = fiat_balances(session=session, user_ids=sorted(topping_up), prices=self.prices)
        debited = {
            spec.debit_account_id
            for spec, g in zip(specs, guards, strict=True)
            if g.operation in RESTRICTED
            and spec.debit_account_id is not None
            and (until := locks_until.get(spec.debit_account_id)) is not None
            and until > now  # an account whose last lot unlocked has none live: no read
        }
        self.lots = live_lots(session=session, account_ids=debited, now=now)

    def admit(self, group: Sequence[Guarded]) -> tuple[int, DomainError] | None:
        undo: list[Any] = []
        for item in group:
            try:
                undo.extend(self._admit_one(item))
            except DomainError as error:
                for step in reversed(undo):
                    step()
                return item.index, error
        return None

    def _admit_one(self, item: Guarded) -> list[Any]:
        g = _limit_guard(item.spec)
        spec = item.spec
        asset = item.debit.asset
        amount = spec.amount_minor or 0
        require_tier(g.tier, g.operation)
        if g.operation in RESTRICTED:
            refused = locked_refusal(
                asset=asset,
                scale=self.prices.scales.get(asset, 0),
                room=item.debit.unreserved + amount,
                amount_minor=amount,
                lots=self.lots.get(item.debit.id, []),
                now=self.now,
            )
            if refused is not None:
                raise refused
        used = self.used.setdefault((g.user_id, g.operation), Sums())
        fiat = self.fiat.setdefault(g.user_id, {}) if reads_balance(_row(g), g.operation) else None
        refusal = decide(
            row=_row(g),
            operation=g.operation,
            asset=asset,
            amount_minor=amount,
            used=used,
            prices=self.prices,
            fiat_balance=fiat,
        )
        if refusal is not None:
            in_batch = self.batch.get((g.user_id, g.operation), [])
            raise _refusal_error(
                self.session, refusal, g.user_id, g.operation, self.prices, self.now, in_batch
            )
        undo: list[Any] = []
        used.add(asset, amount)
        undo.append(lambda: used.add(asset, amount, sign=-1))
        entries = self.batch.setdefault((g.user_id, g.operation), [])
        entries.append((asset, amount))
        undo.append(entries.pop)
        if fiat is not None and self.prices.kind(asset) == "fiat":
            fiat[asset] = fiat.get(asset, 0) + amount
            undo.append(lambda: fiat.__setitem__(asset, fiat[asset] - amount))
        if spec.lock_s:
            lots = self.lots.setdefault(item.credit.id, [])
            lots.append(Unlock(amount, self.now + timedelta(seconds=spec.lock_s)))
            undo.append(lots.pop)
        return undo


def _row(guard: LimitGuard) -> TierLimits:
    return guard.settings.limits.tier(guard.tier)


def _limit_guard(spec: TransferSpec) -> LimitGuard:
    found = spec.guard
    if not isinstance(found, LimitGuard):
        raise TypeError("the limits checker was handed another guard")
    return found


def lock_users(session: Session, user_ids: Sequence[str]) -> None:
    """Transaction locks on these users' limits, in ascending key order (PostgreSQL; SQLite
    has one writer at a time anyway)."""
    if not user_ids or session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({_lock_key(user_id) for user_id in user_ids})
    session.execute(
        text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"),
        {"keys": keys},
    )


def _lock_key(user_id: str) -> int:
    digest = hashlib.sha256(f"strongroom.limits:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# --------------------------------------------------------------------------- reads


def _effective_amount() -> tuple[Any, ColumnElement[Any]]:
    """(the resolution alias, what a transfer counts for): a posted one its amount; a pending
    one its amount while pending, what was posted once posted, nothing once voided."""
    resolution = TRANSFERS.alias("resolution")
    t = TRANSFERS.c
    amount = case(
        (t.kind == TransferKind.POSTED.value, t.amount_minor),
        (resolution.c.id.is_(None), t.amount_minor),
        (resolution.c.kind == TransferKind.POST_PENDING.value, resolution.c.amount_minor),
        else_=0,
    )
    return resolution, amount


def _window_branch(side: str, user_ids: Sequence[str], codes: Sequence[str]) -> Select[Any]:
    t = TRANSFERS.c
    a = ACCOUNTS.c
    resolution, amount = _effective_amount()
    wallet = t.debit_account_id if side == DEBIT else t.credit_account_id
    in_day = t.created_at > bindparam("day_start")
    return (
        select(
            a.owner_id.label("user_id"),
            literal(side).label("side"),
            t.code,
            t.asset,
            func.sum(case((in_day, amount), else_=0)).label("day"),
            func.sum(amount).label("year"),
            func.count(case((and_(in_day, amount > 0), 1))).label("day_count"),
        )
        .select_from(
            ACCOUNTS.join(TRANSFERS, wallet == a.id).outerjoin(
                resolution, resolution.c.pending_id == t.id
            )
        )
        .where(
            a.owner_type == ledger.USER,
            a.kind == "wallet",
            a.owner_id.in_(user_ids),
            t.code.in_(codes),
            t.kind.in_(COUNTED_KINDS),
            t.created_at > bindparam("year_start"),
        )
        .group_by(a.owner_id, t.code, t.asset)
    )


def window_sums(
    *,
    session: Session,
    user_ids: Sequence[str],
    now: datetime,
    prices: Prices,
    operations: Iterable[Operation] = tuple(Operation),
) -> dict[tuple[str, Operation], Sums]:
    """Each user's use of each operation in its rolling day and year at ``now``: ONE statement
    for all of them (an indexed range per wallet and code)."""
    if not user_ids:
        return {}
    wanted = list(operations)
    debit_codes = sorted({JOURNAL[o].code for o in wanted if JOURNAL[o].side == DEBIT})
    credit_codes = sorted({JOURNAL[o].code for o in wanted if JOURNAL[o].side == CREDIT})
    branches = [
        _window_branch(side, user_ids, codes)
        for side, codes in ((DEBIT, debit_codes), (CREDIT, credit_codes))
        if codes
    ]
    statement = union_all(*branches) if len(branches) > 1 else branches[0]
    by_journal = {(j.code, j.side): [] for j in JOURNAL.values()}  # type: dict[tuple[str, str], list[Operation]]
    for operation in wanted:
        journal = JOURNAL[operation]
        by_journal[(journal.code, journal.side)].append(operation)
    out: dict[tuple[str, Operation], Sums] = {}
    rows = session.execute(statement, {"day_start": now - DAY, "year_start": now - YEAR})
    for row in rows:
        for operation in by_journal.get((row.code, row.side), []):
            kind = JOURNAL[operation].asset_kind
            if kind is not None and prices.kind(row.asset) != kind:
                continue
            sums = out.setdefault((row.user_id, operation), Sums())
            sums.day[row.asset] = sums.day.get(row.asset, 0) + int(row.day or 0)
            sums.year[row.asset] = sums.year.get(row.asset, 0) + int(row.year or 0)
            sums.day_count += int(row.day_count or 0)
    return out


def window_entries(
    *, session: Session, user_id: str, operation: Operation, since: datetime
) -> list[tuple[datetime, str, int]]:
    """The transfers of one user's operation since ``since`` (when, asset, amount counted)."""
    journal = JOURNAL[operation]
    t = TRANSFERS.c
    a = ACCOUNTS.c
    resolution, amount = _effective_amount()
    wallet = t.debit_account_id if journal.side == DEBIT else t.credit_account_id
    rows = session.execute(
        select(t.created_at, t.asset, amount.label("amount"))
        .select_from(
            ACCOUNTS.join(TRANSFERS, wallet == a.id).outerjoin(
                resolution, resolution.c.pending_id == t.id
            )
        )
        .where(
            a.owner_type == ledger.USER,
            a.kind == "wallet",
            a.owner_id == user_id,
            t.code == journal.code,
            t.kind.in_(COUNTED_KINDS),
            t.created_at > since,
        )
        .order_by(t.created_at)
    )
    return [(_aware(r.created_at), r.asset, int(r.amount)) for r in rows if int(r.amount) > 0]


def fiat_balances(
    *, session: Session, user_ids: Sequence[str], prices: Prices
) -> dict[str, dict[str, int]]:
    """Each user's fiat wallets (asset -> posted total plus pending credits, minor units)."""
    fiat = sorted(code for code, price in prices.settings.prices.items() if price.kind == "fiat")
    if not user_ids or not fiat:
        return {}
    rows = session.execute(
        select(
            Account.owner_id,
            Account.asset,
            Account.credits_posted,
            Account.debits_posted,
            Account.credits_pending,
        ).where(
            Account.owner_type == ledger.USER,
            Account.kind == "wallet",
            Account.owner_id.in_(user_ids),
            Account.asset.in_(fiat),
        )
    )
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        held = int(row.credits_posted) - int(row.debits_posted) + int(row.credits_pending)
        out.setdefault(row.owner_id, {})[row.asset] = held
    return out


def live_lots(
    *, session: Session, account_ids: Iterable[int], now: datetime
) -> dict[int, list[Unlock]]:
    """What is left of the lock lots of these accounts still locked at ``now``, in one indexed
    read (``ledger.service.live_lots``)."""
    return ledger.live_lots(session=session, account_ids=account_ids, now=now)


def _refusal_error(
    session: Session,
    refusal: Refusal,
    user_id: str,
    operation: Operation,
    prices: Prices,
    now: datetime,
    in_batch: Sequence[tuple[str, int]],
) -> DomainError:
    if refusal.need is None or refusal.window is None:
        return refusal.error(None)
    found = window_entries(
        session=session, user_id=user_id, operation=operation, since=now - refusal.window
    )
    kind = JOURNAL[operation].asset_kind
    entries = [
        (at, value)
        for at, value in (
            *(
                (at, _valued(refusal, prices, asset, minor))
                for at, asset, minor in found
                if kind is None or prices.kind(asset) == kind
            ),
            *((now, _valued(refusal, prices, asset, minor)) for asset, minor in in_batch),
        )
    ]
    return refusal.error(frees_at(refusal, entries))


def _valued(refusal: Refusal, prices: Prices, asset: str, minor: int) -> Fraction | int:
    if refusal.unit == COUNT:
        return 1
    return prices.value(asset, minor, BTC if refusal.unit == BTC else prices.settings.currency)


def _aware(moment: datetime) -> datetime:  # SQLite gives naive UTC
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


# --------------------------------------------------------------------------- T+N holds


def hold_seconds(*, user: User, asset: str, settings: Settings) -> int | None:
    """How long a top-up of ``asset`` through a fiat channel stays locked (R-TN-1): a crypto
    asset bought with fiat is a purchase; fiat credited through a fiat channel is not."""
    if prices_of(settings).kind(asset) != "crypto":
        return None
    hours = hold_hours(settings=settings.limits, tier=user.kyc_tier, nationality=user.nationality)
    return hours * 3600 or None


# --------------------------------------------------------------------------- what is left


@dataclass(frozen=True, slots=True)
class Left:
    """One operation's row of ``GET /v1/limits`` (amounts as decimal strings in ``currency``;
    None where a column does not apply)."""

    operation: Operation
    currency: str
    per_transaction: str | None
    day_left: str | None
    year_left: str | None
    count_left: int | None
    balance_left: str | None
    required_tier: str | None


def overview(
    *, session: Session, user: User, settings: Settings, now: datetime | None = None
) -> list[Left]:
    """What ``user`` may still do, per operation (R-KYC-6 included): one window read."""
    now = now or utcnow()
    prices = prices_of(settings, session)
    currency = settings.limits.currency
    row = settings.limits.tier(user.kyc_tier)
    used = window_sums(session=session, user_ids=[user.id], now=now, prices=prices)
    fiat = fiat_balances(session=session, user_ids=[user.id], prices=prices).get(user.id, {})
    out = []
    for operation in Operation:
        sums = used.get((user.id, operation), Sums())
        try:
            require_tier(user.kyc_tier, operation)
            required = None
        except DomainError:
            required = "primary"
        if operation is Operation.CRYPTO_WITHDRAWAL:
            cap = _cap(row.crypto_withdrawals_24h_btc)
            left = None if cap is None else cap - prices.total(sums.day, BTC)
            out.append(
                Left(
                    operation=operation,
                    currency=BTC,
                    per_transaction=None,
                    day_left=_left(left, BTC, required),
                    year_left=None,
                    count_left=None,
                    balance_left=None,
                    required_tier=required,
                )
            )
            continue
        day = _cap(row.per_day)
        year = _cap(row.per_year)
        per_tx = _cap(row.per_transaction)
        count: int | None = None
        if operation is Operation.FIAT_WITHDRAWAL and row.withdrawals_per_day is not None:
            count = 0 if required else max(row.withdrawals_per_day - sums.day_count, 0)
        balance: str | None = None
        max_balance = _cap(row.max_balance)
        if operation is Operation.TOPUP and max_balance is not None:
            balance = _left(max_balance - prices.total(fiat, currency), currency, None)
        out.append(
            Left(
                operation=operation,
                currency=currency,
                per_transaction=_left(per_tx, currency, required),
                day_left=_left(
                    None if day is None else day - prices.total(sums.day, currency),
                    currency,
                    required,
                ),
                year_left=_left(
                    None if year is None else year - prices.total(sums.year, currency),
                    currency,
                    required,
                ),
                count_left=count,
                balance_left=balance,
                required_tier=required,
            )
        )
    return out


def _cap(text_value: str | None) -> Fraction | None:
    return None if text_value is None else fraction_of(text_value)


def _left(value: Fraction | None, unit: str, required: str | None) -> str | None:
    if value is None:
        return None
    return shown(Fraction(0) if required else value, unit)


def as_dicts(rows: Iterable[Left]) -> list[Mapping[str, Any]]:
    return [
        {
            "operation": r.operation.value,
            "per_transaction": r.per_transaction,
            "day_left": r.day_left,
            "year_left": r.year_left,
            "count_left": r.count_left,
            "currency": r.currency,
            "balance_left": r.balance_left,
            "required_tier": r.required_tier,
        }
        for r in rows
    ]
