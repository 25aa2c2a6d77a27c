"""The ledger service: the only code that writes balances (SPEC P2, R-LEDGER-1..7).

``create_transfers`` takes a batch: it reads what it needs, locks every account it touches in one
statement in ascending id order (so two batches never deadlock), applies linked groups in memory
(all or nothing per group), then writes transfers, entries and balances in a few bulk statements.
A large batch of new transfers on PostgreSQL writes its transfer rows before the lock, in a
savepoint (``_Batch._write_transfers_early``). Services never commit; the caller owns the
transaction.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from strongroom.db import DriverStatement, driver_rows, insert_for, pg_array, utcnow
from strongroom.errors import DomainError, NotFound, invariant, present
from strongroom.ledger import writer
from strongroom.ledger.domain import (
    AccountState,
    Balance,
    GuardChecker,
    Guarded,
    GuardRun,
    LedgerError,
    Movement,
    PendingInfo,
    TransferKind,
    TransferSpec,
    Unlock,
    apply_movement,
    balance_of,
    carried_lots,
    validate_spec,
)
from strongroom.ledger.models import Account, Lock, LockUse, Transfer
from strongroom.settings import LedgerLimits, get_settings

OPERATOR = "operator"
USER = "user"
BALANCE_READ_MAX = 1000
"""The most accounts one balance read takes (a user holds one wallet per asset)."""


@dataclass(frozen=True, slots=True)
class TransferResult:
    index: int
    id: str
    status: str  # "created" | "exists" | "failed"
    error: DomainError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------- accounts


def ensure_account(
    *,
    session: Session,
    owner_type: str,
    owner_id: str,
    kind: str,
    asset: str,
    allow_negative: bool = False,
    negative_limit_minor: int = 0,
) -> Account:
    """Return the account for (owner, kind, asset), creating it if it does not exist yet."""
    account_id = ensure_account_id(
        session=session,
        owner_type=owner_type,
        owner_id=owner_id,
        kind=kind,
        asset=asset,
        allow_negative=allow_negative,
        negative_limit_minor=negative_limit_minor,
    )
    return get_account(session=session, account_id=account_id)


def ensure_account_id(
    *,
    session: Session,
    owner_type: str,
    owner_id: str,
    kind: str,
    asset: str,
    allow_negative: bool = False,
    negative_limit_minor: int = 0,
) -> int:
    """The id of the account for (owner, kind, asset), created if missing: one indexed read on
    the hot path. Safe under concurrency: the insert is ``ON CONFLICT DO NOTHING``. A user's
    account never goes negative (R-SEC-10; also a database CHECK since migration 0006)."""
    if owner_type == USER and (allow_negative or negative_limit_minor):
        raise LedgerError(
            "a user's account may not go negative", code="user_account_may_not_go_negative"
        )
    lookup = _account_lookup(owner_type, owner_id, kind, asset)
    found = session.execute(lookup).scalar()
    if found is not None:
        return int(found)
    values = {
        "owner_type": owner_type,
        "owner_id": owner_id,
        "kind": kind,
        "asset": asset,
        "allow_negative": allow_negative,
        "negative_limit_minor": negative_limit_minor,
        "debits_posted": 0,
        "credits_posted": 0,
        "debits_pending": 0,
        "credits_pending": 0,
        "created_at": utcnow(),
    }
    insert = insert_for(session)
    session.execute(insert(writer.ACCOUNTS).values(**values).on_conflict_do_nothing())
    return int(session.execute(lookup).scalar_one())


def operator_account(*, session: Session, kind: str, asset: str) -> Account:
    """An operator-owned account (bank omnibus, fees, suspense...): may go negative."""
    return ensure_account(
        session=session,
        owner_type=OPERATOR,
        owner_id=OPERATOR,
        kind=kind,
        asset=asset,
        allow_negative=True,
    )


def get_account(*, session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", code="account_not_found")
    return account


def get_accounts(*, session: Session, account_ids: Iterable[int]) -> dict[int, Account]:
    """The accounts with these ids, in one read (missing ids are left out); they stay in the
    session, so ``get_account`` of any of them needs no further query."""
    ids = sorted(set(account_ids))
    invariant(len(ids) <= BALANCE_READ_MAX, "too many accounts for one read")
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(Account).where(Account.id.in_(ids)))}


def accounts_of(
    *, session: Session, owner_type: str, owner_id: str, kind: str | None = None
) -> list[Account]:
    query = select(Account).filter_by(owner_type=owner_type, owner_id=owner_id)
    if kind is not None:
        query = query.filter_by(kind=kind)
    return list(session.scalars(query.order_by(Account.asset, Account.id)))


# --------------------------------------------------------------------------- balances


def balances(
    *, session: Session, account_ids: Sequence[int], now: datetime | None = None
) -> list[Balance]:
    """The ``Balance`` of each account, in the order given (R-LEDGER-4): one read of the
    accounts and one indexed read of their lock lots still locked at ``now``."""
    if not account_ids:
        return []
    now = now or utcnow()
    invariant(len(account_ids) <= BALANCE_READ_MAX, "too many accounts for one balance read")
    rows = {
        row.id: row
        for row in session.execute(
            select(
                Account.id,
                Account.asset,
                Account.debits_posted,
                Account.credits_posted,
                Account.debits_pending,
            ).where(Account.id.in_(account_ids))
        )
    }
    lots = live_lots(session=session, account_ids=account_ids, now=now)
    out = []
    for account_id in account_ids:
        row = rows.get(account_id)
        if row is None:
            raise NotFound(f"account {account_id} does not exist", code="account_not_found")
        out.append(
            balance_of(
                account_id=row.id,
                asset=row.asset,
                debits_posted=row.debits_posted,
                credits_posted=row.credits_posted,
                debits_pending=row.debits_pending,
                lots=lots.get(row.id, ()),
                now=now,
            )
        )
    return out


def live_lots(
    *, session: Session, account_ids: Iterable[int], now: datetime
) -> dict[int, list[Unlock]]:
    """What is left of the lock lots of these accounts still locked at ``now`` (a lot counts
    ``amount_minor - consumed_minor``), in one indexed read."""
    ids = sorted(set(account_ids))
    out: dict[int, list[Unlock]] = {}
    if not ids:
        return out
    for row in session.execute(
        select(Lock.account_id, Lock.amount_minor, Lock.consumed_minor, Lock.unlocks_at).where(
            Lock.account_id.in_(ids), Lock.unlocks_at > now
        )
    ):  # arithmetic in Python: SQLite keeps amounts as text (db.Amount)
        left = row.amount_minor - row.consumed_minor
        if left > 0:
            out.setdefault(row.account_id, []).append(Unlock(left, _aware_at(row.unlocks_at)))
    return out


def balance(*, session: Session, account_id: int, now: datetime | None = None) -> Balance:
    """One account's ``Balance``."""
    return balances(session=session, account_ids=[account_id], now=now)[0]


def wallet_balances(
    *, session: Session, user_id: str, now: datetime | None = None
) -> list[Balance]:
    """A user's wallet balances, one per asset held, in asset order. Reads only: no account
    is created."""
    ids = session.scalars(
        select(Account.id)
        .filter_by(owner_type="user", owner_id=user_id, kind="wallet")
        .order_by(Account.asset, Account.id)
        .limit(BALANCE_READ_MAX)
    ).all()
    return balances(session=session, account_ids=list(ids), now=now)


def lock(
    *,
    session: Session,
    account_id: int,
    amount_minor: int,
    unlocks_at: datetime,
    transfer_id: str | None = None,
) -> int:
    """Lock ``amount_minor`` of an account until ``unlocks_at`` (a T+N lot); its id."""
    invariant(amount_minor > 0, "a lock lot must be positive")
    account = get_account(session=session, account_id=account_id)
    row = Lock(
        account_id=account_id,
        asset=account.asset,
        amount_minor=amount_minor,
        unlocks_at=unlocks_at,
        transfer_id=transfer_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    _extend_locks_until(session, {account_id: unlocks_at})
    return row.id


def _extend_locks_until(session: Session, until: dict[int, datetime]) -> None:
    """Raise ``Account.locks_until`` of these accounts to these times (never lower it)."""
    table = writer.ACCOUNTS
    session.execute(
        update(table)
        .where(
            table.c.id == bindparam("row_id"),
            or_(table.c.locks_until.is_(None), table.c.locks_until < bindparam("at")),
        )
        .values(locks_until=bindparam("at")),
        [{"row_id": account_id, "at": at} for account_id, at in sorted(until.items())],
    )


def carry_locks(
    *,
    session: Session,
    debit_transfer_id: str,
    to_account_id: int,
    spent_minor: int,
    received_minor: int,
    transfer_id: str | None = None,
) -> list[Unlock]:
    """Carry the T+N lock of a conversion's locked funds to the received asset (R-TN-2). Call it
    in the transaction of the conversion's legs, after them: ``debit_transfer_id`` is the leg
    that debited ``spent_minor``, ``to_account_id`` was credited ``received_minor``. The locked
    money the debit used is what it consumed of its account's lots (the ledger consumed them
    with the debit, free money first, then the lots that unlock soonest: ``LockUse``); each
    used lot is carried to the received account pro rata, until the same time; the shares are
    rounded up (``domain.carried_lots``). The lots written, earliest first (none when only free
    money was used)."""
    invariant(spent_minor > 0 and received_minor > 0, "a conversion moves money both ways")
    used = [
        Unlock(int(row.amount), _aware_at(row.unlocks_at))
        for row in session.execute(
            select(LockUse.unlocks_at, func.sum(LockUse.amount_minor).label("amount"))
            .where(LockUse.transfer_id == debit_transfer_id)
            .group_by(LockUse.unlocks_at)
            .order_by(LockUse.unlocks_at)
        )
    ]
    carried = carried_lots(used, spent_minor=spent_minor, received_minor=received_minor)
    for lot in carried:
        lock(
            session=session,
            account_id=to_account_id,
            amount_minor=lot.amount_minor,
            unlocks_at=lot.at,
            transfer_id=transfer_id,
        )
    return carried


def user_wallet_id_if_any(*, session: Session, user_id: str, asset: str) -> int | None:
    """A user's wallet in one asset if it exists (no account is created)."""
    found = session.execute(_account_lookup(USER, user_id, "wallet", asset)).scalar()
    return None if found is None else int(found)


def _account_lookup(owner_type: str, owner_id: str, kind: str, asset: str) -> Select[Any]:
    """The id of the account for (owner, kind, asset): one indexed read."""
    table = writer.ACCOUNTS
    return select(table.c.id).where(
        table.c.owner_type == owner_type,
        table.c.owner_id == owner_id,
        table.c.kind == kind,
        table.c.asset == asset,
    )


# --------------------------------------------------------------------------- transfers


def transfer(
    *,
    session: Session,
    spec: TransferSpec,
    now: datetime | None = None,
    limits: LedgerLimits | None = None,
) -> str:
    """One transfer; raises its error. Returns the transfer id."""
    (result,) = create_transfers(session=session, specs=[spec], now=now, limits=limits)
    if result.error is not None:
        raise result.error
    return result.id


def create_transfers(
    *,
    session: Session,
    specs: Sequence[TransferSpec],
    now: datetime | None = None,
    limits: LedgerLimits | None = None,
) -> list[TransferResult]:
    """Apply a batch of transfers. A transfer with ``linked=True`` succeeds or fails together
    with the next one (R-LEDGER-2). Returns one result per spec, in order."""
    limits = limits or get_settings().ledger
    if len(specs) > limits.batch_max_transfers:
        raise LedgerError(
            f"a batch holds at most {limits.batch_max_transfers} transfers",
            code="batch_too_large",
            max=limits.batch_max_transfers,
        )
    if not specs:
        return []
    batch = _Batch(session, list(specs), now or utcnow(), limits)
    return batch.run()


class _Batch:
    def __init__(
        self, session: Session, specs: list[TransferSpec], now: datetime, limits: LedgerLimits
    ) -> None:
        self.session = session
        self.specs = specs
        self.now = now
        self.limits = limits
        self.batch_id = str(uuid.uuid4())
        fresh = iter(_new_ids(sum(1 for spec in specs if spec.id is None)))
        self.ids = [spec.id or next(fresh) for spec in specs]
        self.errors: dict[int, DomainError] = {}
        self.exists: set[int] = set()
        self.pendings: dict[str, PendingInfo] = {}
        self.states: dict[int, AccountState] = {}
        self.applied: list[tuple[Movement, int, int]] = []
        self.guards: list[tuple[GuardChecker, GuardRun]] = []
        self.locks_until: dict[int, datetime] = {}
        self.early: tuple[SessionTransaction, set[str]] | None = None
        self.made: dict[int, Movement] = {}  # movements built before the lock, by index

    def run(self) -> list[TransferResult]:
        self._validate_shapes()
        self._load_existing()
        self._load_pendings()
        before = (dict(self.errors), set(self.exists), dict(self.pendings))
        written_early = self._write_transfers_early()
        self._apply()
        if written_early and not self._keep_early_transfers():
            # The savepoint is gone, and with it the account locks taken inside it: apply
            # again from the states before, under locks taken afresh (in id order).
            self.errors, self.exists = dict(before[0]), set(before[1])
            self.pendings = dict(before[2])
            self.states, self.locks_until, self.applied, self.guards = {}, {}, [], []
            self._apply()
            written_early = False
        self._write(with_transfers=not written_early)
        return self._results()

    def _apply(self) -> None:
        self._lock_accounts()
        self._load_resolutions()
        self._begin_guards()
        for group in _groups(self.specs):
            self._apply_group(group)

    # -- stage 1: what needs no account

    def _validate_shapes(self) -> None:
        seen: set[str] = set()
        for index, spec in enumerate(self.specs):
            try:
                validate_spec(
                    spec,
                    timeout_max_s=self.limits.pending_timeout_max_s,
                    note_max_chars=self.limits.note_max_chars,
                )
            except DomainError as error:
                self.errors[index] = error
            if self.ids[index] in seen:
                self.errors[index] = LedgerError(
                    "transfer id appears twice in the batch", code="duplicate_id"
                )
            seen.add(self.ids[index])

    def _load_existing(self) -> None:
        client_ids = {
            self.ids[i]: i
            for i, spec in enumerate(self.specs)
            if spec.id is not None and not spec.new_id
        }
        if not client_ids:
            return
        rows = self.session.execute(
            select(Transfer).where(Transfer.id.in_(list(client_ids)))
        ).scalars()
        for row in rows:
            index = client_ids[row.id]
            if _same_transfer(row, self.specs[index]):
                self.exists.add(index)
            else:
                self.errors[index] = LedgerError(
                    f"transfer {row.id} exists with different fields",
                    code="transfer_exists_with_different_fields",
                    id=row.id,
                )

    def _write_transfers_early(self) -> bool:
        """A large batch of new posted or pending transfers writes its transfer rows BEFORE it
        locks its accounts, so that concurrent batches over the same accounts write them side
        by side and only the entries (they carry ``balance_after``) and the balances wait for
        the lock (issue #14). They go in a savepoint: if the ledger then refuses any of them
        (a flag, a linked group), the savepoint is rolled back (the journal is append-only:
        no row is ever deleted) and the accepted ones are written again after the lock.
        Not for resolutions of pending transfers (whether one is still open is read under the
        lock, and a concurrent resolution of the same one would wait on its unique key) nor for
        guarded transfers (the guards' own reads and locks come after the accounts')."""
        if len(self.specs) * 2 < writer.COPY_MIN_ROWS:
            return False
        if self.session.get_bind().dialect.name != "postgresql":
            return False
        if any(
            spec.kind not in (TransferKind.POSTED, TransferKind.PENDING) or spec.guard is not None
            for spec in self.specs
        ):
            return False
        rows, ids = [], set()
        for index in range(len(self.specs)):
            if index in self.errors or index in self.exists:
                continue
            move = self.made[index] = self._movement(index, self.pendings)
            rows.append(self._transfer_row(move))
            ids.add(move.id)
        if not rows:
            return False
        savepoint = self.session.begin_nested()
        try:
            writer.write_transfers(self.session, rows)
        except IntegrityError:
            # An account that does not exist in the transfer's asset (the database checks the
            # accounts of the statement's transfers as it writes them, migration 0043): the
            # lock reads every account and refuses such a transfer with its own error.
            savepoint.rollback()
            return False
        self.early = (savepoint, ids)
        return True

    def _transfer_row(self, move: Movement) -> tuple[Any, ...]:
        return (
            move.id,
            move.kind.value,
            move.debit_account_id,
            move.credit_account_id,
            move.asset,
            move.amount_minor,
            move.pending_id,
            move.timeout_at,
            self.batch_id,
            move.spec.code,
            move.spec.note,
            self.now,
        )

    def _load_pendings(self) -> None:
        wanted = {s.pending_id for s in self.specs if s.pending_id is not None}
        if not wanted:
            return
        rows = self.session.execute(
            select(Transfer).where(Transfer.id.in_(wanted), Transfer.kind == TransferKind.PENDING)
        ).scalars()
        for row in rows:
            self.pendings[row.id] = PendingInfo(
                id=row.id,
                debit_account_id=row.debit_account_id,
                credit_account_id=row.credit_account_id,
                asset=row.asset,
                amount_minor=row.amount_minor,
                timeout_at=_aware(row.timeout_at),
                resolved=False,
            )

    def _lock_accounts(self) -> None:
        wanted: set[int] = set()
        for spec in self.specs:
            for account_id in (spec.debit_account_id, spec.credit_account_id):
                if account_id is not None:
                    wanted.add(account_id)
        for pending in self.pendings.values():
            wanted.update((pending.debit_account_id, pending.credit_account_id))
        if not wanted:
            return
        self.states, self.locks_until = _lock(self.session, sorted(wanted))

    def _load_resolutions(self) -> None:
        # Read after the accounts are locked: every post/void of a pending locks its accounts,
        # so no other transaction can resolve it between this read and our commit.
        if not self.pendings:
            return
        rows = self.session.execute(
            select(Transfer.pending_id).where(Transfer.pending_id.in_(list(self.pendings)))
        ).scalars()
        for pending_id in rows:
            if pending_id is not None:
                info = self.pendings[pending_id]
                self.pendings[pending_id] = _resolved(info)

    def _begin_guards(self) -> None:
        # After the accounts are locked: each checker takes its own locks and reads (domain: guards)
        by_checker: dict[int, tuple[GuardChecker, list[TransferSpec]]] = {}
        for index, spec in enumerate(self.specs):
            if spec.guard is None or index in self.errors or index in self.exists:
                continue
            if spec.kind not in (TransferKind.POSTED, TransferKind.PENDING):
                continue  # a post or void only resolves what was checked when it was made
            checker = spec.guard.checker
            by_checker.setdefault(id(checker), (checker, []))[1].append(spec)
        for checker, specs in by_checker.values():
            run = checker.begin(self.session, specs, self.now, self.locks_until)
            self.guards.append((checker, run))

    def _admit(self, group: list[int], staged: dict[int, AccountState]) -> int | None:
        """Ask the guards about a group the ledger accepted; the index of a refused one."""
        for checker, run in self.guards:
            guarded = [
                Guarded(
                    index=index,
                    spec=spec,
                    debit=staged[present(spec.debit_account_id, "guarded transfers move")],
                    credit=staged[present(spec.credit_account_id, "guarded transfers move")],
                )
                for index in group
                if index not in self.exists
                and (spec := self.specs[index]).guard is not None
                and spec.kind in (TransferKind.POSTED, TransferKind.PENDING)
                and spec.guard.checker is checker
            ]
            if guarded:
                refused = run.admit(guarded)
                if refused is not None:
                    self.errors[refused[0]] = refused[1]
                    return refused[0]
        return None

    # -- stage 2: apply each linked group in memory

    def _apply_group(self, group: list[int]) -> None:
        if len(group) == 1 and self._try_alone(group[0]):
            return
        failed = next((i for i in group if i in self.errors), None)
        if failed is None and self.specs[group[-1]].linked:
            failed = group[-1]
            self.errors[failed] = LedgerError(
                "the last transfer of the batch is linked to nothing", code="linked_chain_open"
            )
        if failed is None:
            failed = self._try_group(group)
        if failed is not None:
            for index in group:
                if index != failed:
                    self.errors[index] = LedgerError(
                        f"linked transfer {failed} failed",
                        code="linked_transfer_failed",
                        failed_index=failed,
                    )
                self.exists.discard(index)

    def _try_alone(self, index: int) -> bool:
        """A transfer linked to nothing, new, posted or pending, unguarded: the common case of a
        large batch, applied to copies of its two accounts only (no copy of every state the
        group could touch, no pendings map copied): this runs under the account locks, once
        per transfer. True when done (applied, or refused with its error); False sends it
        through ``_try_group``."""
        spec = self.specs[index]
        if (
            spec.linked
            or spec.guard is not None
            or index in self.errors
            or index in self.exists
            or spec.kind not in (TransferKind.POSTED, TransferKind.PENDING)
        ):
            return False
        try:
            move = self.made.get(index) or self._movement(index, self.pendings)
            debit = _state(self.states, move.debit_account_id).copy()
            credit = _state(self.states, move.credit_account_id).copy()
            _apply_in_one_asset(debit, credit, move)
        except DomainError as error:
            self.errors[index] = error
            return True
        self._track_pending(move, self.pendings)
        self.states[debit.id] = debit
        self.states[credit.id] = credit
        self.applied.append((move, debit.total, credit.total))  # running balances
        return True

    def _try_group(self, group: list[int]) -> int | None:
        involved = self._group_accounts(group)
        staged = {aid: self.states[aid].copy() for aid in involved if aid in self.states}
        pendings = dict(self.pendings)
        movements: list[tuple[Movement, int, int]] = []
        for index in group:
            if index in self.exists:
                continue
            try:
                move = self.made.get(index) or self._movement(index, pendings)
                debit = _state(staged, move.debit_account_id)
                credit = _state(staged, move.credit_account_id)
                _apply_in_one_asset(debit, credit, move)
            except DomainError as error:
                self.errors[index] = error
                return index
            self._track_pending(move, pendings)
            movements.append((move, debit.total, credit.total))  # running balances
        refused = self._admit(group, staged) if self.guards else None
        if refused is not None:
            return refused
        self.states.update(staged)
        self.pendings = pendings
        self.applied.extend(movements)
        return None

    def _group_accounts(self, group: list[int]) -> set[int]:
        ids: set[int] = set()
        for index in group:
            spec = self.specs[index]
            ids.update(i for i in (spec.debit_account_id, spec.credit_account_id) if i is not None)
            pending = self.pendings.get(spec.pending_id or "")
            if pending is not None:
                ids.update((pending.debit_account_id, pending.credit_account_id))
        return ids

    def _movement(self, index: int, pendings: dict[str, PendingInfo]) -> Movement:
        spec, transfer_id = self.specs[index], self.ids[index]
        if spec.kind in (TransferKind.POSTED, TransferKind.PENDING):
            debit_id = present(spec.debit_account_id, "a movement names its debit account")
            credit_id = present(spec.credit_account_id, "a movement names its credit account")
            asset = present(spec.asset, "a movement names its asset")
            amount_minor = present(spec.amount_minor, "a movement names its amount")
            timeout_at = (
                self.now + timedelta(seconds=spec.timeout_s) if spec.timeout_s is not None else None
            )
            pending = spec.kind is TransferKind.PENDING
            return Movement(
                spec=spec,
                id=transfer_id,
                kind=spec.kind,
                debit_account_id=debit_id,
                credit_account_id=credit_id,
                asset=asset,
                amount_minor=amount_minor,
                posted_minor=0 if pending else amount_minor,
                pending_delta=amount_minor if pending else 0,
                pending_id=None,
                timeout_at=timeout_at,
            )
        return self._resolution(spec, transfer_id, pendings)

    def _resolution(
        self, spec: TransferSpec, transfer_id: str, pendings: dict[str, PendingInfo]
    ) -> Movement:
        pending = pendings.get(spec.pending_id or "")
        if pending is None:
            raise NotFound(
                f"pending transfer {spec.pending_id} does not exist",
                code="pending_transfer_not_found",
            )
        if pending.resolved:
            raise LedgerError(
                f"pending transfer {pending.id} was already posted or voided",
                code="pending_transfer_already_resolved",
            )
        if spec.kind is TransferKind.POST_PENDING and _expired(pending, self.now):
            raise LedgerError(
                f"pending transfer {pending.id} has expired", code="pending_transfer_expired"
            )
        for given, actual in (
            (spec.asset, pending.asset),
            (spec.debit_account_id, pending.debit_account_id),
            (spec.credit_account_id, pending.credit_account_id),
        ):
            if given is not None and given != actual:
                raise LedgerError(
                    "fields differ from the pending transfer", code="pending_transfer_mismatch"
                )
        amount = pending.amount_minor
        if spec.kind is TransferKind.POST_PENDING and spec.amount_minor is not None:
            if spec.amount_minor > pending.amount_minor:
                raise LedgerError(
                    "cannot post more than the pending amount",
                    code="exceeds_pending_amount",
                    pending_minor=str(pending.amount_minor),
                )
            amount = spec.amount_minor
        posted = amount if spec.kind is TransferKind.POST_PENDING else 0
        return Movement(
            spec=spec,
            id=transfer_id,
            kind=spec.kind,
            debit_account_id=pending.debit_account_id,
            credit_account_id=pending.credit_account_id,
            asset=pending.asset,
            amount_minor=amount,
            posted_minor=posted,
            pending_delta=-pending.amount_minor,
            pending_id=pending.id,
            timeout_at=None,
        )

    @staticmethod
    def _track_pending(move: Movement, pendings: dict[str, PendingInfo]) -> None:
        if move.kind is TransferKind.PENDING:
            pendings[move.id] = PendingInfo(
                id=move.id,
                debit_account_id=move.debit_account_id,
                credit_account_id=move.credit_account_id,
                asset=move.asset,
                amount_minor=move.amount_minor,
                timeout_at=move.timeout_at,
                resolved=False,
            )
        elif move.pending_id is not None:
            pendings[move.pending_id] = _resolved(pendings[move.pending_id])

    # -- stage 3: write

    def _write(self, *, with_transfers: bool) -> None:
        if not self.applied:
            return
        transfers, entries = [], []
        for move, debit_total, credit_total in self.applied:
            if with_transfers:
                transfers.append(self._transfer_row(move))
            entries.append(
                (
                    move.id,
                    move.debit_account_id,
                    move.asset,
                    "D",
                    move.posted_minor,
                    move.pending_delta,
                    debit_total,
                    self.now,
                )
            )
            entries.append(
                (
                    move.id,
                    move.credit_account_id,
                    move.asset,
                    "C",
                    move.posted_minor,
                    move.pending_delta,
                    credit_total,
                    self.now,
                )
            )
        touched = sorted(
            {
                aid
                for move, _, _ in self.applied
                for aid in (move.debit_account_id, move.credit_account_id)
            }
        )
        writer.write(
            self.session, transfers, entries, [_balance_row(self.states[aid]) for aid in touched]
        )
        locks = [
            {
                "account_id": move.credit_account_id,
                "asset": move.asset,
                "amount_minor": move.amount_minor,
                "unlocks_at": self.now + timedelta(seconds=move.spec.lock_s),
                "transfer_id": move.id,
                "created_at": self.now,
            }
            for move, _, _ in self.applied
            if move.spec.lock_s
        ]
        if locks:
            self.session.execute(writer.LOCKS.insert(), locks)
            until: dict[int, datetime] = {}
            for move, _, _ in self.applied:
                if not move.spec.lock_s:
                    continue
                account_id = move.credit_account_id
                at = self.now + timedelta(seconds=move.spec.lock_s)
                until[account_id] = max(at, until.get(account_id, at))
                self.locks_until[account_id] = max(at, self.locks_until.get(account_id, at))
            _extend_locks_until(self.session, until)
        self._consume_lots()

    def _keep_early_transfers(self) -> bool:
        """Whether the transfers written early are exactly the ones applied (the savepoint is
        released); otherwise it is rolled back (``run`` then applies the batch again)."""
        early, self.early = self.early, None
        if early is None:
            return False
        savepoint, ids = early
        if len(ids) == len(self.applied) and all(move.id in ids for move, _, _ in self.applied):
            savepoint.commit()  # RELEASE SAVEPOINT: the rows stay in the transaction
            return True
        savepoint.rollback()
        return False

    def _consume_lots(self) -> None:
        """A posted debit that used locked money consumes the lots it used, in this
        transaction (R-TN-2): the part of the amount above what was free, from the lots that
        unlock soonest, as ``balance_of`` spends them; one ``LockUse`` per lot used. Only
        accounts whose ``locks_until`` is still ahead (read with the account lock) read their
        lots: one statement for the batch; the others pay nothing."""
        debited = {
            move.debit_account_id
            for move, _, _ in self.applied
            if move.posted_minor > 0
            and (until := self.locks_until.get(move.debit_account_id)) is not None
            and until > self.now
        }
        if not debited:
            return
        rows = self.session.execute(
            select(
                Lock.id,
                Lock.account_id,
                Lock.amount_minor,
                Lock.consumed_minor,
                Lock.unlocks_at,
                Lock.transfer_id,
            )
            .where(Lock.account_id.in_(sorted(debited)), Lock.unlocks_at > self.now)
            .order_by(Lock.unlocks_at.desc(), Lock.id.desc())
        ).all()
        if not rows:
            return
        written_here = {move.id for move, _, _ in self.applied if move.spec.lock_s}
        lots: dict[int, list[_Lot]] = {}  # latest unlock first
        arriving: dict[str, list[_Lot]] = {}  # lots this batch's credits wrote, by transfer
        for row in rows:
            if row.consumed_minor >= row.amount_minor:
                continue
            lot = _Lot(row.id, _aware_at(row.unlocks_at), row.amount_minor - row.consumed_minor)
            lot.consumed = row.consumed_minor
            if row.transfer_id in written_here:
                arriving.setdefault(row.transfer_id, []).append(lot)
            else:
                lots.setdefault(row.account_id, []).append(lot)
        states = self._states_before(debited)
        uses: list[dict[str, Any]] = []
        for move, _, _ in self.applied:
            debit = states.get(move.debit_account_id)
            if debit is not None:
                debit.debits_pending += move.pending_delta
                debit.debits_posted += move.posted_minor
                if move.posted_minor > 0:
                    for lot, used in _spend(
                        lots.get(debit.id, []), debit.unreserved, move.posted_minor
                    ):
                        lot.used += used
                        uses.append(
                            {
                                "lock": lot,
                                "lock_id": lot.id,
                                "transfer_id": move.id,
                                "amount_minor": used,
                                "unlocks_at": lot.at,
                                "created_at": self.now,
                            }
                        )
            credit = states.get(move.credit_account_id)
            if credit is not None:
                credit.credits_pending += move.pending_delta
                credit.credits_posted += move.posted_minor
                if move.id in arriving:
                    merged = lots.setdefault(credit.id, []) + arriving[move.id]
                    merged.sort(key=lambda lot: (lot.at, lot.id), reverse=True)
                    lots[credit.id] = merged
        if not uses:
            return
        consumed = {use["lock"].id: use.pop("lock") for use in uses}
        table = writer.LOCKS
        self.session.execute(  # amounts computed in Python (SQLite keeps them as text)
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values(consumed_minor=bindparam("consumed")),
            [
                {"row_id": lot.id, "consumed": lot.consumed + lot.used}
                for _, lot in sorted(consumed.items())
            ],
        )
        self.session.execute(writer.LOCK_USES.insert(), uses)

    def _states_before(self, account_ids: set[int]) -> dict[int, AccountState]:
        """These accounts' states before this batch: their staged states less the batch's
        movements."""
        states = {aid: self.states[aid].copy() for aid in account_ids}
        for move, _, _ in self.applied:
            debit = states.get(move.debit_account_id)
            if debit is not None:
                debit.debits_pending -= move.pending_delta
                debit.debits_posted -= move.posted_minor
            credit = states.get(move.credit_account_id)
            if credit is not None:
                credit.credits_pending -= move.pending_delta
                credit.credits_posted -= move.posted_minor
        return states

    def _results(self) -> list[TransferResult]:
        results = []
        for index, transfer_id in enumerate(self.ids):
            error = self.errors.get(index)
            if error is not None:
                results.append(TransferResult(index, transfer_id, "failed", error))
            else:
                status = "exists" if index in self.exists else "created"
                results.append(TransferResult(index, transfer_id, status))
        return results


def _new_ids(count: int) -> list[str]:
    """``count`` new transfer ids: RFC 9562 version 7 UUIDs as text (48 bits of Unix time in
    milliseconds, a 16-bit counter in ``rand_a`` and the top of ``rand_b``, 58 random bits), in
    ascending order. Time-ordered ids land at the right edge of the indexes keyed by transfer
    id (the transfers' primary key, the entries' ``(transfer_id, side)``), a few pages per
    batch, where random ones touch a page per row all over them (issue #14); the random bits
    keep ids of concurrent batches apart. One read of the system's random source per batch."""
    now_ms = time.time_ns() // 1_000_000
    randoms = os.urandom(8 * count)
    ids = []
    for index in range(count):
        counter = index & 0xFFFF
        high = ((now_ms + (index >> 16)) << 16) | 0x7000 | (counter >> 4)
        rest = int.from_bytes(randoms[8 * index : 8 * index + 8]) >> 6
        low = (0b10 << 62) | ((counter & 0xF) << 58) | rest
        h = f"{high:016x}{low:016x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


@dataclass(slots=True)
class _Lot:
    """A live lock lot while a batch consumes it: ``left`` = amount - consumed."""

    id: int
    at: datetime
    left: int
    consumed: int = 0
    used: int = 0


def _spend(lots: list[_Lot], room_after: int, posted_minor: int) -> list[tuple[_Lot, int]]:
    """What a posted debit of ``posted_minor`` consumes of ``lots`` (latest unlock first),
    ``room_after`` being its account's total - pending after it: the lots ``balance_of``
    counted before the debit and no longer counts after it (it fills the room with the latest
    lots, so the soonest are spent first). Updates ``left``; the (lot, amount) pairs used."""
    before, after = max(room_after + posted_minor, 0), max(room_after, 0)
    used = []
    for lot in lots:
        if before <= 0:
            break
        kept_before, kept_after = min(lot.left, before), min(lot.left, after)
        before -= kept_before
        after -= kept_after
        if kept_before > kept_after:
            lot.left -= kept_before - kept_after
            used.append((lot, kept_before - kept_after))
    return used


def _groups(specs: Sequence[TransferSpec]) -> Iterator[list[int]]:
    group: list[int] = []
    for index, spec in enumerate(specs):
        group.append(index)
        if not spec.linked:
            yield group
            group = []
    if group:
        yield group


def _lock(
    session: Session, account_ids: list[int]
) -> tuple[dict[int, AccountState], dict[int, datetime]]:
    """Lock the accounts (ascending ids); their states, and ``locks_until`` of those that have
    ever had a lot. ``FOR NO KEY UPDATE``: the balance update changes no key, so inserts whose
    foreign keys name these accounts (lock lots, adjustments) in other transactions go on."""
    if session.get_bind().dialect.name == "postgresql":
        rows: Sequence[Any] = driver_rows(session, _PG_LOCK, {"ids": pg_array(account_ids)})
    else:
        rows = _lock_rows(session, account_ids)
    states = {
        row[0]: AccountState(row[0], row[1], row[2], *(int(amount) for amount in row[3:8]))
        for row in rows
    }  # amounts as int: PostgreSQL's numeric arrives as Decimal through a text statement
    until = {row[0]: _aware_at(row[-1]) for row in rows if row[-1] is not None}
    return states, until


_PG_LOCK = DriverStatement(
    """
    SELECT id, asset, allow_negative, negative_limit_minor, debits_posted, credits_posted,
           debits_pending, credits_pending, locks_until
      FROM ledger_accounts WHERE id = ANY(CAST(:ids AS bigint[]))
     ORDER BY id FOR NO KEY UPDATE
    """
)
"""``_lock`` on PostgreSQL: one statement text whatever the number of accounts (an expanding
``IN`` is rendered again for each call and each length, issue #14)."""


def _lock_rows(session: Session, account_ids: list[int]) -> Sequence[Any]:
    return session.execute(
        select(
            Account.id,
            Account.asset,
            Account.allow_negative,
            Account.negative_limit_minor,
            Account.debits_posted,
            Account.credits_posted,
            Account.debits_pending,
            Account.credits_pending,
            Account.locks_until,
        )
        .where(Account.id.in_(account_ids))
        .order_by(Account.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE: foreign-key checks need not wait
    ).all()


def _apply_in_one_asset(debit: AccountState, credit: AccountState, move: Movement) -> None:
    """``apply_movement``, refused when an account is of another asset than the transfer."""
    if debit.asset != move.asset or credit.asset != move.asset:
        raise LedgerError("accounts and transfer must be in one asset", code="asset_mismatch")
    apply_movement(debit, credit, move)


def _state(states: dict[int, AccountState], account_id: int) -> AccountState:
    state = states.get(account_id)
    if state is None:
        raise NotFound(
            f"account {account_id} does not exist", code="account_not_found", account_id=account_id
        )
    return state


def _balance_row(state: AccountState) -> tuple[int, int, int, int, int]:
    return (
        state.id,
        state.debits_posted,
        state.credits_posted,
        state.debits_pending,
        state.credits_pending,
    )


def _same_transfer(row: Transfer, spec: TransferSpec) -> bool:
    pairs = (
        (spec.kind.value, row.kind),
        (spec.pending_id, row.pending_id),
        (spec.code, row.code),
        (spec.note, row.note),
    )
    optional = (
        (spec.debit_account_id, row.debit_account_id),
        (spec.credit_account_id, row.credit_account_id),
        (spec.asset, row.asset),
        (spec.amount_minor, row.amount_minor),
    )
    return all(a == b for a, b in pairs) and all(a is None or a == b for a, b in optional)


def _resolved(info: PendingInfo) -> PendingInfo:
    return PendingInfo(
        info.id,
        info.debit_account_id,
        info.credit_account_id,
        info.asset,
        info.amount_minor,
        info.timeout_at,
        resolved=True,
    )


def _aware_at(moment: datetime) -> datetime:  # SQLite gives naive UTC
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


def _aware(moment: datetime | None) -> datetime | None:  # SQLite gives naive UTC
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=utcnow().tzinfo)


def _expired(pending: PendingInfo, now: datetime) -> bool:
    return pending.timeout_at is not None and pending.timeout_at <= now


def expire_pending(
    *, session: Session, now: datetime | None = None, limit: int | None = None
) -> int:
    """Void pending transfers whose timeout has passed (R-LEDGER-3). Returns how many."""
    now = now or utcnow()
    limit = limit or get_settings().ledger.expire_batch_max
    resolution = Transfer.__table__.alias("resolution")
    due = (
        session.execute(
            select(Transfer.id)
            .outerjoin(resolution, resolution.c.pending_id == Transfer.id)
            .where(
                and_(
                    Transfer.kind == TransferKind.PENDING,
                    Transfer.timeout_at <= now,
                    resolution.c.id.is_(None),
                )
            )
            .order_by(Transfer.timeout_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    if not due:
        return 0
    specs = [
        TransferSpec(kind=TransferKind.VOID_PENDING, pending_id=pending_id, code="expired")
        for pending_id in due
    ]
    results = create_transfers(session=session, specs=specs, now=now)
    return sum(1 for result in results if result.ok)


def transfer_by_id(*, session: Session, transfer_id: str) -> Transfer:
    row = session.get(Transfer, transfer_id)
    if row is None:
        raise NotFound(f"transfer {transfer_id} does not exist", code="transfer_not_found")
    return row


def pending_state(*, session: Session, transfer_id: str) -> str:
    """ "pending", "posted", "voided" or "expired" for a pending transfer."""
    row = session.execute(
        select(Transfer.kind, Transfer.code).where(Transfer.pending_id == transfer_id)
    ).first()
    if row is None:
        return "pending"
    if row.kind == TransferKind.POST_PENDING:
        return "posted"
    return "expired" if row.code == "expired" else "voided"


def counterparties(*, session: Session, transfer_ids: Iterable[str]) -> dict[str, Transfer]:
    ids = list(set(transfer_ids))
    if not ids:
        return {}
    rows = session.execute(select(Transfer).where(Transfer.id.in_(ids))).scalars()
    return {row.id: row for row in rows}


def user_wallet_id(*, session: Session, user_id: str, asset: str) -> int:
    """A user's wallet in one asset (never negative), created on first use."""
    return ensure_account_id(
        session=session, owner_type="user", owner_id=user_id, kind="wallet", asset=asset
    )


def user_wallet(*, session: Session, user_id: str, asset: str) -> Account:
    """A user's wallet in one asset (never negative), created on first use."""
    return ensure_account(
        session=session, owner_type="user", owner_id=user_id, kind="wallet", asset=asset
    )
