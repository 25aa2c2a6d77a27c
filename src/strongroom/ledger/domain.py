"""Pure ledger logic: how transfers change account balances, and what is refused.

No database here. The service loads and locks the accounts, hands their balances to
``apply_group`` and writes back what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from strongroom.errors import DomainError, InsufficientFunds, InvalidAmount, invariant
from strongroom.money import MAX_AMOUNT_MINOR

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

BALANCE_FIELD_MAX = 10**39 - 1
"""What a NUMERIC(39,0) balance field can hold."""

TRANSFER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class TransferKind(StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"


class LedgerError(DomainError):
    status = 422


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """A request to move money. For post/void the accounts and asset come from the pending
    transfer; ``amount_minor`` None on a post means the whole pending amount.

    ``guard``: a rule checked in the applying transaction (see "guards" below; the limits).
    ``lock_s``: the credited amount is locked for that many seconds from the transfer (a T+N
    lot in ``ledger_locks``, R-TN-1), written in the same transaction as the credit.
    ``new_id``: ``id`` is a fresh UUID this server chose for a new transfer (the group commit's),
    so no transfer can already have it: the batch does not look it up (a client's id is looked
    up, and a replay answers ``exists``)."""

    kind: TransferKind = TransferKind.POSTED
    debit_account_id: int | None = None
    credit_account_id: int | None = None
    asset: str | None = None
    amount_minor: int | None = None
    id: str | None = None
    pending_id: str | None = None
    timeout_s: int | None = None
    code: str = "transfer"
    note: str | None = None
    linked: bool = False
    guard: TransferGuard | None = field(default=None, compare=False, repr=False)
    lock_s: int | None = None
    new_id: bool = False


@dataclass(slots=True)
class AccountState:
    id: int
    asset: str
    allow_negative: bool
    negative_limit_minor: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def total(self) -> int:
        return total_minor(credits_posted=self.credits_posted, debits_posted=self.debits_posted)

    @property
    def unreserved(self) -> int:
        """What the account's own flags let a transfer take: total - pending debits. Locked
        lots (T+N) are not a ledger flag: which operations may use them is decided per
        operation (R-TN-2); every reader shows them through ``Balance``."""
        return self.total - self.debits_pending

    def copy(self) -> AccountState:
        # Field by field: ``dataclasses.replace`` costs several times more, once per account of
        # every transfer of a batch.
        return AccountState(
            self.id,
            self.asset,
            self.allow_negative,
            self.negative_limit_minor,
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
        )


@dataclass(frozen=True, slots=True)
class Unlock:
    """A lot of locked money (T+N, R-TN-1) and when it becomes free."""

    amount_minor: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Balance:
    """The one read model of an account's balance (R-LEDGER-4), used by every reader: the API,
    the Lite app, the console, and the proof-of-reserves snapshot (whose set-based query uses
    ``total_minor``).

    ``total`` = credits posted - debits posted; ``pending`` = debits pending (reserved, gone from
    ``available`` at once); ``locked`` = lots not yet unlocked, never more than what is held
    (total - pending, when positive): locked money spent where that is allowed (a merchant, a
    conversion) is taken from the oldest lots first, so ``unlocks`` lists the lots still locked,
    earliest first, and sums to ``locked``; ``available`` = total - pending - locked."""

    account_id: int
    asset: str
    total_minor: int
    pending_minor: int
    locked_minor: int
    unlocks: tuple[Unlock, ...]

    @property
    def available_minor(self) -> int:
        return self.total_minor - self.pending_minor - self.locked_minor


def total_minor(*, credits_posted: int, debits_posted: int) -> int:
    """``Balance.total_minor``: an account's posted balance, credit-normal (R-LEDGER-4). Also
    for set-based readers that do not build a ``Balance`` (the proof-of-reserves snapshot)."""
    return credits_posted - debits_posted


def balance_of(
    *,
    account_id: int,
    asset: str,
    debits_posted: int,
    credits_posted: int,
    debits_pending: int,
    lots: Sequence[Unlock],
    now: datetime,
) -> Balance:
    """R-LEDGER-4 from an account's balance fields and its lock lots (the only formula)."""
    total = total_minor(credits_posted=credits_posted, debits_posted=debits_posted)
    room = max(total - debits_pending, 0)
    kept: list[Unlock] = []
    for lot in sorted((lot for lot in lots if lot.at > now), key=lambda lot: lot.at, reverse=True):
        if room <= 0:
            break
        amount = min(lot.amount_minor, room)
        kept.append(Unlock(amount_minor=amount, at=lot.at))
        room -= amount
    kept.reverse()
    return Balance(
        account_id=account_id,
        asset=asset,
        total_minor=total,
        pending_minor=debits_pending,
        locked_minor=sum(lot.amount_minor for lot in kept),
        unlocks=tuple(kept),
    )


@dataclass(frozen=True, slots=True)
class PendingInfo:
    id: str
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount_minor: int
    timeout_at: datetime | None
    resolved: bool


@dataclass(frozen=True, slots=True)
class Movement:
    """What one accepted transfer does: ``posted_minor`` moves posted balance from debit to
    credit; ``pending_delta`` (signed) reserves or releases pending balance on both sides."""

    spec: TransferSpec
    id: str
    kind: TransferKind
    debit_account_id: int
    credit_account_id: int
    asset: str
    amount_minor: int
    posted_minor: int
    pending_delta: int
    pending_id: str | None
    timeout_at: datetime | None


def validate_spec(spec: TransferSpec, *, timeout_max_s: int, note_max_chars: int) -> None:
    """Checks that need no account: shape, amount range, ids."""
    if spec.id is not None and not TRANSFER_ID.fullmatch(spec.id):
        raise LedgerError("transfer id must be 1-64 of A-Z a-z 0-9 _ . : -", code="invalid_id")
    if spec.note is not None and len(spec.note) > note_max_chars:
        raise LedgerError(f"note is longer than {note_max_chars} characters", code="invalid_note")
    if spec.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
        if not spec.pending_id:
            raise LedgerError("pending_id is required", code="pending_id_required")
        if spec.amount_minor is not None and spec.kind is TransferKind.POST_PENDING:
            _check_amount(spec.amount_minor)
        return
    if spec.debit_account_id is None or spec.credit_account_id is None or spec.asset is None:
        raise LedgerError(
            "debit account, credit account and asset are required", code="validation_error"
        )
    if spec.amount_minor is None:
        raise InvalidAmount("amount is required")
    _check_amount(spec.amount_minor)
    if spec.debit_account_id == spec.credit_account_id:
        raise LedgerError("debit and credit account are the same", code="same_account")
    if spec.lock_s is not None and (spec.kind is not TransferKind.POSTED or spec.lock_s < 0):
        raise LedgerError("only posted transfers lock what they credit", code="validation_error")
    if spec.timeout_s is not None:
        if spec.kind is not TransferKind.PENDING:
            raise LedgerError("only pending transfers take a timeout", code="validation_error")
        if not 0 < spec.timeout_s <= timeout_max_s:
            raise LedgerError(f"timeout must be 1..{timeout_max_s} seconds", code="invalid_timeout")


def _check_amount(amount_minor: int) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvalidAmount("amount must be an integer of minor units")
    if not 0 < amount_minor <= MAX_AMOUNT_MINOR:
        raise InvalidAmount(
            "amount must be between one minor unit and 2^128 - 1", amount_minor=str(amount_minor)
        )


def apply_movement(debit: AccountState, credit: AccountState, move: Movement) -> None:
    """Apply one movement to the two accounts in place; raise if a flag would break."""
    invariant(debit.asset == credit.asset == move.asset, "asset mismatch reached apply")
    invariant(move.posted_minor >= 0, "posted amount is never negative")
    debit.debits_pending += move.pending_delta
    credit.credits_pending += move.pending_delta
    debit.debits_posted += move.posted_minor
    credit.credits_posted += move.posted_minor
    if move.kind in (TransferKind.POSTED, TransferKind.PENDING):
        # Posting or voiding only releases a reservation already checked; never refuse it.
        _check_flags(debit, move.amount_minor)
    for state in (debit, credit):
        for value in (
            state.debits_posted,
            state.credits_posted,
            state.debits_pending,
            state.credits_pending,
        ):
            if value > BALANCE_FIELD_MAX:
                raise LedgerError("balance would overflow", code="overflow")
        invariant(
            state.debits_pending >= 0 and state.credits_pending >= 0,
            "pending balance went negative",
        )


def _check_flags(debit: AccountState, amount_minor: int) -> None:
    if debit.allow_negative or amount_minor == 0:
        return
    floor = -debit.negative_limit_minor
    if debit.unreserved < floor:
        available_before = debit.unreserved + amount_minor
        raise InsufficientFunds(
            "insufficient funds",
            account_id=debit.id,
            asset=debit.asset,
            available_minor=str(max(available_before, 0)),
            requested_minor=str(amount_minor),
        )


def consumed_lots(before: Balance, after: Balance) -> list[Unlock]:
    """The locked money a debit used, lot by lot, earliest unlock first: what ``before.unlocks``
    holds that ``after.unlocks`` no longer does (``balance_of`` spends free money first, then the
    lots that unlock soonest). Lots that unlock at the same moment are one lot here."""
    invariant(before.account_id == after.account_id, "two balances of one account")
    remaining: dict[datetime, int] = {}
    for lot in after.unlocks:
        remaining[lot.at] = remaining.get(lot.at, 0) + lot.amount_minor
    held: dict[datetime, int] = {}
    for lot in before.unlocks:
        held[lot.at] = held.get(lot.at, 0) + lot.amount_minor
    used = []
    for at in sorted(held):
        amount = held[at] - remaining.get(at, 0)
        invariant(amount >= 0, "a debit never adds locked money")
        if amount:
            used.append(Unlock(amount_minor=amount, at=at))
    return used


def carried_lots(used: Sequence[Unlock], *, spent_minor: int, received_minor: int) -> list[Unlock]:
    """The lots a conversion carries to the received asset (R-TN-2): each used lot's share of
    what was received, ``lot x received / spent``, with the same unlock time.

    Rounding: the shares are rounded UP cumulatively (lot k carries ceil(sum of lots 1..k x
    received / spent) minus what lots 1..k-1 carried), so the hold never covers less than the
    locked share of what was received, the total carried exceeds the exact pro-rata amount by
    less than one minor unit, and never exceeds ``received_minor``."""
    invariant(spent_minor > 0 and received_minor >= 0, "a conversion spent something")
    total_used = sum(lot.amount_minor for lot in used)
    invariant(total_used <= spent_minor, "a conversion uses no more locked money than it spent")
    carried: list[Unlock] = []
    cumulative = 0
    carried_so_far = 0
    for lot in used:
        cumulative += lot.amount_minor
        target = -(-cumulative * received_minor // spent_minor)  # ceiling
        amount = target - carried_so_far
        if amount > 0:
            carried.append(Unlock(amount_minor=amount, at=lot.at))
        carried_so_far = target
    invariant(carried_so_far <= received_minor, "a conversion carries no more than it received")
    return carried


# --------------------------------------------------------------------------- guards
# Rules that other packages check inside the transaction that applies a transfer.
#
# A ``TransferSpec`` may carry a ``guard`` (the limits package supplies one: R-LIMIT-1, R-TN-2).
# The ledger groups a batch's guards by their ``checker`` and, after it has locked every account
# the batch touches (ascending ids), calls ``checker.begin`` once per checker with all of them:
# that is where a checker takes its own locks (in a fixed order, after the accounts, so two
# batches cannot deadlock) and reads what it needs in set-based statements. Then, for each
# linked group whose movements the ledger accepted, ``admit`` sees the group's guarded
# transfers with their accounts' staged states (earlier transfers of the batch included) and
# either accepts them all (and remembers them for the rest of the batch) or names the first one
# it refuses. The ledger never commits: the caller's transaction holds the locks until its
# commit, so a check and the write it allows cannot interleave with another's.


class TransferGuard(Protocol):
    @property
    def checker(self) -> GuardChecker: ...


class GuardChecker(Protocol):
    def begin(
        self,
        session: Session,
        guarded: Sequence[TransferSpec],
        now: datetime,
        locks_until: Mapping[int, datetime],
    ) -> GuardRun:
        """Start checking one batch; ``locks_until``: the latest unlock time of each locked
        account that has ever had a T+N lot (read with the account lock); an account not in
        it, or whose time has passed, has no live lot to read."""
        ...


@dataclass(frozen=True, slots=True)
class Guarded:
    """One guarded transfer of a group the ledger accepted: the spec, and the staged states of
    its debit and credit accounts after it (and after every earlier transfer of the batch)."""

    index: int
    spec: TransferSpec
    debit: AccountState
    credit: AccountState


class GuardRun(Protocol):
    def admit(self, group: Sequence[Guarded]) -> tuple[int, DomainError] | None:
        """``None`` when every transfer of ``group`` is allowed (and then counted for the rest
        of the batch); else the index of the first refused and its error (nothing counted)."""
        ...
