"""Gifts / red packets (R-GIFT-1, R-TN-2).

``create`` moves the whole amount from the sender's wallet into the operator's gift escrow
(account kind ``gift_escrow``, one per asset) in ONE transfer, in the caller's transaction,
after locking the sender's wallet and the escrow: the T+N check (locked money cannot be gifted,
``funds_locked``) reads the balance under that lock, so two concurrent gifts cannot both spend
locked money. The shares are cut and stored at creation.

``claim`` locks the gift's row (``FOR UPDATE``), so concurrent claims of one gift take turns:
each takes the next unclaimed share, or is refused (``gift_exhausted``, ``gift_already_claimed``,
``gift_expired``). A unique (gift, claimer) pair backs the one-claim-per-user rule.

``expire_due`` (the worker's sweep) returns the unclaimed rest of gifts past their time to the
sender, one transfer a gift, at most ``limit`` gifts a run, ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL so several workers share the work; a gift it expired is no longer ``open``, so a
second run finds nothing to do.

Services never commit: the caller's unit of work does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from strongroom.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InsufficientFunds,
    NotFound,
    ValidationFailed,
    invariant,
)
from strongroom.gifts import split as splits
from strongroom.gifts.models import CLAIMED, EXPIRED, OPEN, Gift, GiftShare
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec, total_minor
from strongroom.ledger.models import Account
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.money import Money, format_amount
from strongroom.settings import Settings
from strongroom.vault import Keyring, Sealed

ESCROW_KIND = "gift_escrow"
CLAIM_PATH = "/app/gifts/claim"
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
"""32 symbols without 0/O and 1/I: 5 bits each."""
CODE_CHARS = 20
"""100 bits of ``secrets``: far beyond guessing (R-GIFT-1 asks at least 80)."""
CODE_GROUP = 5
_CODE_INPUT = re.compile(r"[\s-]+")


class FundsLocked(DomainError):
    """The amount is held, but part of it is locked under T+N (R-TN-2) until ``unlocks_at``."""

    code = "funds_locked"
    status = 422


LimitsCheck = Callable[[Session, User, Money], None]
"""The limits rules for a gift (operation kind ``gift``): raises the refusal, returns nothing."""


# --------------------------------------------------------------------------- claim codes


def new_code() -> str:
    """A fresh claim code: ``XXXXX-XXXXX-XXXXX-XXXXX`` from ``CODE_ALPHABET``."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_CHARS))
    return "-".join(raw[i : i + CODE_GROUP] for i in range(0, CODE_CHARS, CODE_GROUP))


def normalise_code(text: str) -> str:
    """A code as typed (any case, spaces and dashes anywhere) in its canonical form; 422
    ``invalid_claim_code`` when it cannot be one of ours."""
    compact = _CODE_INPUT.sub("", text).upper()
    if len(compact) != CODE_CHARS or any(ch not in CODE_ALPHABET for ch in compact):
        raise ValidationFailed(
            f"a claim code is {CODE_CHARS} letters and digits, like XXXXX-XXXXX-XXXXX-XXXXX",
            code="invalid_claim_code",
        )
    return "-".join(compact[i : i + CODE_GROUP] for i in range(0, CODE_CHARS, CODE_GROUP))


def code_hash(code: str) -> str:
    return hashlib.sha256(f"strongroom gift\x00{code}".encode()).hexdigest()


def claim_link(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}{CLAIM_PATH}?code={code}"


def _code_context(digest: str) -> str:
    return f"gifts.claim_code:{digest}"


def claim_code_of(gift: Gift, vault: Keyring) -> str:
    """The gift's claim code, opened with the vault key that sealed it (the sender's view)."""
    sealed = Sealed(key_id=gift.claim_code_key_id, ciphertext=gift.claim_code_sealed)
    return vault.open(sealed, context=_code_context(gift.claim_code_hash))


# --------------------------------------------------------------------------- create


@dataclass(frozen=True, slots=True)
class Created:
    gift: Gift
    claim_code: str


def create(
    *,
    session: Session,
    sender: User,
    amount: Money,
    shares: int,
    split: splits.Split,
    settings: Settings,
    now: datetime,
    limits_check: LimitsCheck | None = None,
) -> Created:
    """Send a gift: check, lock, move the amount into escrow, store the gift and its shares."""
    verification.require_verified(sender)  # R-SEC-11
    if sender.operator_role is not None:
        raise Forbidden("operators do not send gifts", code="operator_not_allowed")
    check_shape(amount=amount, shares=shares, shares_max=settings.gifts.shares_max)
    if limits_check is None:  # the tier's limits for a gift (R-LIMIT-1); T+N is below
        limits.check(
            session=session,
            user=sender,
            operation=Operation.GIFT,
            amount=amount,
            settings=settings,
            now=now,
        )
    else:
        limits_check(session, sender, amount)
    asset = amount.asset.code
    wallet_id = ledger.user_wallet_id_if_any(session=session, user_id=sender.id, asset=asset)
    if wallet_id is None:
        raise _insufficient(None, asset, 0, amount.amount_minor)
    escrow_id = ledger.operator_account(session=session, kind=ESCROW_KIND, asset=asset).id
    _lock_accounts(session, [wallet_id, escrow_id])
    check_funds(session=session, wallet_id=wallet_id, amount=amount, now=now)
    parts = splits.cut(split, amount.amount_minor, shares)
    transfer_id = ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=wallet_id,
            credit_account_id=escrow_id,
            asset=asset,
            amount_minor=amount.amount_minor,
            code="gift",
            # checked again where the transfer is applied, under the user's lock
            guard=limits.guard(user=sender, operation=Operation.GIFT, settings=settings),
        ),
        now=now,
        limits=settings.ledger,
    )
    code = new_code()
    digest = code_hash(code)
    sealed = settings.auth.vault.seal(code, context=_code_context(digest))
    gift = Gift(
        sender_id=sender.id,
        region=sender.region,
        asset=asset,
        amount_minor=amount.amount_minor,
        shares=shares,
        split=split.value,
        status=OPEN,
        claimed_shares=0,
        claimed_minor=0,
        refunded_minor=0,
        claim_code_hash=digest,
        claim_code_sealed=sealed.ciphertext,
        claim_code_key_id=sealed.key_id,
        transfer_id=transfer_id,
        created_at=now,
        expires_at=now + timedelta(hours=settings.gifts.ttl_hours),
    )
    session.add(gift)
    session.flush()
    session.execute(  # one statement for every share (at most ``gifts.shares_max`` rows)
        insert(GiftShare).values(
            [
                {"gift_id": gift.id, "position": position, "amount_minor": part}
                for position, part in enumerate(parts)
            ]
        )
    )
    return Created(gift=gift, claim_code=code)


def check_shape(*, amount: Money, shares: int, shares_max: int) -> None:
    """A gift's shares: 1..``shares_max``, each at least one minor unit."""
    if not 1 <= shares <= shares_max:
        raise ValidationFailed(
            f"a gift has 1 to {shares_max} shares", code="invalid_shares", max=shares_max
        )
    if amount.amount_minor < shares:
        raise ValidationFailed(
            "each share needs at least one minor unit: the amount is too small for "
            f"{shares} shares",
            code="gift_amount_too_small",
            asset=amount.asset.code,
            min_amount=format_amount(shares, amount.asset.scale),
        )


def check_funds(*, session: Session, wallet_id: int, amount: Money, now: datetime) -> None:
    """Refuse a gift the wallet's available balance does not cover: ``funds_locked`` when the
    held money would cover it but some is locked (T+N, R-TN-2: gifts may not use it), with
    when enough unlocks; ``insufficient_funds`` otherwise."""
    balance = ledger.balance(session=session, account_id=wallet_id, now=now)
    wanted = amount.amount_minor
    if wanted <= balance.available_minor:
        return
    asset = amount.asset
    if wanted > balance.total_minor - balance.pending_minor:
        raise _insufficient(wallet_id, asset.code, balance.available_minor, wanted)
    free, unlocks_at = balance.available_minor, None
    for lot in balance.unlocks:  # earliest first
        free += lot.amount_minor
        unlocks_at = lot.at
        if free >= wanted:
            break
    raise FundsLocked(
        "part of this amount is locked (T+N) and cannot be gifted until it unlocks",
        asset=asset.code,
        locked=format_amount(balance.locked_minor, asset.scale),
        locked_minor=str(balance.locked_minor),
        available=format_amount(max(balance.available_minor, 0), asset.scale),
        unlocks_at=unlocks_at.isoformat() if unlocks_at is not None else None,
    )


def _insufficient(account_id: int | None, asset: str, available: int, wanted: int) -> DomainError:
    return InsufficientFunds(
        "insufficient funds",
        account_id=account_id,
        asset=asset,
        available_minor=str(max(available, 0)),
        requested_minor=str(wanted),
    )


def _lock_accounts(session: Session, account_ids: Sequence[int]) -> None:
    """Lock the accounts in ascending id order (the ledger's order: no deadlock with it)."""
    session.execute(
        select(Account.id)
        .where(Account.id.in_(sorted(set(account_ids))))
        .order_by(Account.id)
        .with_for_update()
    ).all()


# --------------------------------------------------------------------------- claim


@dataclass(frozen=True, slots=True)
class Claimed:
    gift_id: int
    asset: str
    amount_minor: int
    transfer_id: str


def claim(
    *, session: Session, claimer: User, code: str, settings: Settings, now: datetime
) -> Claimed:
    """Take the next unclaimed share of the gift with this code into the claimer's wallet."""
    canonical = normalise_code(code)
    verification.require_verified(claimer)  # R-SEC-11: money moves only for verified accounts
    if claimer.operator_role is not None:
        raise Forbidden("operators do not claim gifts", code="operator_not_allowed")
    gift = session.execute(
        select(Gift)
        .where(Gift.claim_code_hash == code_hash(canonical))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if gift is None:
        raise NotFound("no gift with this claim code", code="gift_not_found")
    if gift.status == EXPIRED or now >= gift.expires_at:
        raise Conflict("this gift has expired", code="gift_expired", expires_at=_iso(gift))
    if gift.sender_id == claimer.id:
        raise Forbidden("you cannot claim your own gift", code="gift_own_claim")
    if gift.region != claimer.region:
        raise DomainError(
            "gifts between regions are not possible",
            code="cross_region_transfer",
            from_region=gift.region,
            to_region=claimer.region,
        )
    mine = session.execute(
        select(GiftShare.position).where(
            GiftShare.gift_id == gift.id, GiftShare.claimed_by == claimer.id
        )
    ).first()
    if mine is not None:
        raise Conflict("you have already claimed this gift", code="gift_already_claimed")
    share = session.execute(
        select(GiftShare)
        .where(GiftShare.gift_id == gift.id, GiftShare.claimed_by.is_(None))
        .order_by(GiftShare.position)
        .limit(1)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if gift.status == CLAIMED or share is None:
        raise Conflict("every share of this gift has been claimed", code="gift_exhausted")
    escrow_id = ledger.operator_account(session=session, kind=ESCROW_KIND, asset=gift.asset).id
    wallet_id = ledger.user_wallet_id(session=session, user_id=claimer.id, asset=gift.asset)
    transfer_id = ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=escrow_id,
            credit_account_id=wallet_id,
            asset=gift.asset,
            amount_minor=share.amount_minor,
            code="gift_claim",
        ),
        now=now,
        limits=settings.ledger,
    )
    share.claimed_by = claimer.id
    share.claimed_at = now
    share.transfer_id = transfer_id
    gift.claimed_shares += 1
    gift.claimed_minor += share.amount_minor
    if gift.claimed_shares == gift.shares:
        gift.status = CLAIMED
        gift.finished_at = now
    session.flush()
    return Claimed(
        gift_id=gift.id, asset=gift.asset, amount_minor=share.amount_minor, transfer_id=transfer_id
    )


def _iso(gift: Gift) -> str:
    return gift.expires_at.isoformat()


# --------------------------------------------------------------------------- expiry


def expire_due(*, session: Session, now: datetime, limit: int) -> int:
    """Return the unclaimed rest of at most ``limit`` open gifts past their time to their
    senders (one transfer a gift) and mark them expired; how many gifts it expired."""
    invariant(limit >= 1, "expire at least one gift a run")
    due = list(
        session.execute(
            select(Gift)
            .where(Gift.status == OPEN, Gift.expires_at <= now)
            .order_by(Gift.expires_at, Gift.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).scalars()
    )
    if not due:
        return 0
    refunds: list[tuple[Gift, TransferSpec]] = []
    for gift in due:
        rest = gift.amount_minor - gift.claimed_minor
        invariant(rest > 0, "an open gift has something left")
        escrow_id = ledger.operator_account(session=session, kind=ESCROW_KIND, asset=gift.asset).id
        wallet_id = ledger.user_wallet_id(session=session, user_id=gift.sender_id, asset=gift.asset)
        spec = TransferSpec(
            debit_account_id=escrow_id,
            credit_account_id=wallet_id,
            asset=gift.asset,
            amount_minor=rest,
            code="gift_refund",
        )
        refunds.append((gift, spec))
    results = ledger.create_transfers(session=session, specs=[spec for _, spec in refunds], now=now)
    for (gift, spec), result in zip(refunds, results, strict=True):
        if result.error is not None:
            raise result.error
        gift.status = EXPIRED
        gift.refunded_minor = spec.amount_minor or 0
        gift.refund_transfer_id = result.id
        gift.finished_at = now
    session.flush()
    return len(due)


# --------------------------------------------------------------------------- reading


def sent_by(
    *, session: Session, sender_id: str, limit: int, before_id: int | None = None
) -> list[Gift]:
    """The sender's gifts, newest first, at most ``limit``, with ids below ``before_id``."""
    query = select(Gift).where(Gift.sender_id == sender_id)
    if before_id is not None:
        query = query.where(Gift.id < before_id)
    return list(session.scalars(query.order_by(Gift.id.desc()).limit(limit)))


def get_for_sender(*, session: Session, sender_id: str, gift_id: int) -> Gift:
    """One of the sender's gifts; 404 ``gift_not_found`` for anyone else's (no hint it exists)."""
    gift = session.get(Gift, gift_id)
    if gift is None or gift.sender_id != sender_id:
        raise NotFound("no such gift", code="gift_not_found")
    return gift


def shares_of(*, session: Session, gift_id: int) -> list[GiftShare]:
    return list(
        session.scalars(
            select(GiftShare).where(GiftShare.gift_id == gift_id).order_by(GiftShare.position)
        )
    )


def owed_in_escrow(*, session: Session) -> dict[tuple[str, str], int]:
    """What the open gifts still hold in the escrow, by (sender id, asset): each gift's amount
    less what was claimed and refunded. It is money the operator owes its sender until it is
    claimed or goes back, so the proof of reserves counts it in the sender's balance. Summed
    here, not in SQL: SQLite keeps amounts as text (``db.Amount``)."""
    owed: dict[tuple[str, str], int] = {}
    query = select(
        Gift.sender_id, Gift.asset, Gift.amount_minor, Gift.claimed_minor, Gift.refunded_minor
    ).where(Gift.status == OPEN)
    for sender_id, asset, amount, claimed, refunded in session.execute(query):
        remaining = int(amount) - int(claimed) - int(refunded)
        invariant(remaining >= 0, "a gift's claims and refund exceed its amount")
        if remaining:
            owed[(sender_id, asset)] = owed.get((sender_id, asset), 0) + remaining
    return owed


def escrow_totals(*, session: Session) -> dict[str, int]:
    """The ledger's gift escrow accounts' posted totals, by asset."""
    rows = session.execute(
        select(Account.asset, Account.credits_posted, Account.debits_posted).where(
            Account.kind == ESCROW_KIND
        )
    )
    totals: dict[str, int] = {}
    for asset, credits, debits in rows:
        total = total_minor(credits_posted=int(credits), debits_posted=int(debits))
        totals[asset] = totals.get(asset, 0) + total
    return totals
