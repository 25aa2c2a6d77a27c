"""Pure ledger logic: how transfers change account balances, and what is refused.

No database here. The service loads and locks the accounts, hands their balances to
``apply_group`` and writes back what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from strongroom.errors import DomainError, InsufficientFunds, InvalidAmount, invariant
from strongroom.money import MAX_AMOUNT_MINOR

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
    transfer; ``amount_minor`` None on a post means the whole pending amount."""

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
