"""Peer-to-peer transfers between users of one region (R-P2P-1, R-REGION-1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, bindparam, select
from sqlalchemy.orm import Session, aliased

from strongroom.db import utcnow
from strongroom.errors import DomainError, InsufficientFunds, NotFound
from strongroom.identity import phones, verification
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.identity.service import normalise_email
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import Balance, TransferSpec, Unlock, balance_of
from strongroom.ledger.models import Account, Lock
from strongroom.limits import service as limits_engine
from strongroom.limits.rules import Operation, locked_refusal
from strongroom.money import Money
from strongroom.settings import LedgerLimits, Settings, get_settings


@dataclass(frozen=True, slots=True)
class CheckedSend:
    """A transfer that would go through now: who receives it, from which wallet (and into which,
    when the recipient already has one in the asset: None means it is opened on first use)."""

    recipient: User
    source_account_id: int
    target_account_id: int | None = None


def check_send(
    *,
    session: Session,
    sender: User,
    to: str,
    amount: Money,
    note: str | None,
    limits: LedgerLimits,
    settings: Settings | None = None,
) -> CheckedSend:
    """Everything a send is refused for, without writing anything: the recipient (a user, not
    oneself, the same region), the note, the sender's balance (the ledger's ``Balance``: total
    - pending), the T+N locks (``funds_locked``, R-TN-2), then the limits engine (``p2p_send``:
    the tier's limits, R-LIMIT-1), so a refused send creates no wallet either.

    One statement reads the recipient, the sender's wallet with its balance fields and its
    lock lots, and the recipient's wallet (issue #14: these were five round trips); a phone
    number is first resolved to its user (one more). The refusals come in the order they
    always did."""
    verification.require_verified(sender)  # R-SEC-11: email_unverified before anything else
    if note is not None and len(note) > limits.note_max_chars:
        raise DomainError(
            f"note is longer than {limits.note_max_chars} characters", code="invalid_note"
        )
    asset = amount.asset.code
    now = utcnow()
    view = _send_view(session=session, sender=sender, to=to, asset=asset, now=now)
    recipient = None if view is None else view.recipient
    if recipient is None or recipient.operator_role is not None:
        raise NotFound("no user with that email, phone or id", code="recipient_not_found")
    if recipient.id == sender.id:
        raise DomainError("you cannot send money to yourself", code="same_account")
    if recipient.region != sender.region:
        raise DomainError(
            "transfers between regions are not possible",
            code="cross_region_transfer",
            from_region=sender.region,
            to_region=recipient.region,
        )
    source = None if view is None else view.source
    available_minor = 0 if source is None else source.available_minor
    if source is None or amount.amount_minor > source.total_minor - source.pending_minor:
        raise InsufficientFunds(
            "insufficient funds",
            account_id=None if source is None else source.account_id,
            asset=asset,
            available_minor=str(max(available_minor, 0)),
            requested_minor=str(amount.amount_minor),
        )
    locked = locked_refusal(
        asset=asset,
        scale=amount.asset.scale,
        room=source.total_minor - source.pending_minor,
        amount_minor=amount.amount_minor,
        lots=source.unlocks,
        now=now,
    )
    if locked is not None:
        raise locked
    limits_engine.check(  # the tier's limits; the locks were checked above, from this view
        session=session,
        user=sender,
        operation=Operation.P2P_SEND,
        amount=amount,
        settings=settings or get_settings(),
        now=now,
    )
    return CheckedSend(
        recipient=recipient,
        source_account_id=source.account_id,
        target_account_id=None if view is None else view.target_account_id,
    )


@dataclass(frozen=True, slots=True)
class _SendView:
    recipient: User
    source: Balance | None
    target_account_id: int | None


def _send_view(
    *, session: Session, sender: User, to: str, asset: str, now: datetime
) -> _SendView | None:
    """The recipient named by ``to`` (a user id ``u_...`` or an email), the sender's wallet in
    ``asset`` as a ``Balance`` (None without one) and the recipient's wallet id in ``asset``
    (None without one), in ONE statement; None when no user answers to ``to``. A row per lock
    lot of the sender's wallet still locked at ``now`` (one row when there is none)."""
    reference = to.strip()
    if reference.startswith("u_"):
        statement = _SEND_VIEW_BY_ID
    elif phones.looks_like_phone(reference):
        found = identity.find_user(session=session, reference=reference, region=sender.region)
        if found is None:
            return None
        reference, statement = found.id, _SEND_VIEW_BY_ID
    else:
        try:
            reference = normalise_email(reference)
        except DomainError:
            return None
        statement = _SEND_VIEW_BY_EMAIL
    rows = session.execute(
        statement, {"reference": reference, "sender_id": sender.id, "asset": asset, "now": now}
    ).all()
    if not rows:
        return None
    first = rows[0]
    recipient, source_id, debits_posted, credits_posted, debits_pending, target_id = first[:6]
    balance = None
    if source_id is not None:
        # what is left of each lot: spent locked money consumed part of it (arithmetic here:
        # SQLite keeps amounts as text)
        lots = [
            Unlock(row[6] - row[8], row[7])
            for row in rows
            if row[6] is not None and row[6] - row[8] > 0
        ]
        balance = balance_of(
            account_id=source_id,
            asset=asset,
            debits_posted=debits_posted,
            credits_posted=credits_posted,
            debits_pending=debits_pending,
            lots=lots,
            now=now,
        )
    return _SendView(recipient=recipient, source=balance, target_account_id=target_id)


def _send_view_statement(
    names_recipient: ColumnElement[bool],
) -> Select[User, int, int, int, int, int, int, datetime, int]:
    """Built once per way of naming the recipient (the values are bound per call)."""
    source = aliased(Account, name="source")
    target = aliased(Account, name="target")
    asset = bindparam("asset", type_=String)
    return (
        select(
            User,
            source.id,
            source.debits_posted,
            source.credits_posted,
            source.debits_pending,
            target.id,
            Lock.amount_minor,
            Lock.unlocks_at,
            Lock.consumed_minor,
        )
        .select_from(User)
        .outerjoin(source, _wallet_of(source, bindparam("sender_id", type_=String), asset))
        .outerjoin(target, _wallet_of(target, User.id, asset))
        .outerjoin(
            Lock,
            and_(
                Lock.account_id == source.id,
                Lock.unlocks_at > bindparam("now", type_=Lock.unlocks_at.type),
            ),
        )
        .where(names_recipient)
    )


def _wallet_of(account: Any, owner_id: Any, asset: Any) -> ColumnElement[bool]:
    return and_(
        account.owner_type == ledger.USER,
        account.owner_id == owner_id,
        account.kind == "wallet",
        account.asset == asset,
    )


# an erased account (privacy.service.erase) is named by no reference: nobody sends it money
_SEND_VIEW_BY_ID = _send_view_statement(
    and_(User.id == bindparam("reference", type_=String), User.erased_at.is_(None))
)
_SEND_VIEW_BY_EMAIL = _send_view_statement(
    and_(User.email == bindparam("reference", type_=String), User.erased_at.is_(None))
)


def send(
    *,
    session: Session,
    sender: User,
    to: str,
    amount: Money,
    note: str | None = None,
    limits: LedgerLimits | None = None,
    settings: Settings | None = None,
) -> str:
    """Send at once in the caller's transaction (the demo, tests); requests go through the
    money-movement service instead. The transfer's id."""
    spec = prepare_send(
        session=session,
        sender=sender,
        to=to,
        amount=amount,
        note=note,
        limits=limits or LedgerLimits(),
        settings=settings,
    )
    return ledger.transfer(session=session, spec=spec)


def prepare_send(
    *,
    session: Session,
    sender: User,
    to: str,
    amount: Money,
    note: str | None,
    limits: LedgerLimits,
    settings: Settings | None = None,
) -> TransferSpec:
    """``check_send``, then the transfer from the sender's wallet to the recipient's (opened on
    first use); the transfer itself is left to the caller (the money-movement service)."""
    settings = settings or get_settings()
    checked = check_send(
        session=session,
        sender=sender,
        to=to,
        amount=amount,
        note=note,
        limits=limits,
        settings=settings,
    )
    return spec_for(
        session=session,
        sender=sender,
        checked=checked,
        amount=amount,
        note=note,
        settings=settings,
    )


def spec_for(
    *,
    session: Session,
    sender: User,
    checked: CheckedSend,
    amount: Money,
    note: str | None,
    settings: Settings,
) -> TransferSpec:
    """The transfer of a checked send, to the recipient's wallet (opened on first use)."""
    target = checked.target_account_id
    if target is None:
        target = ledger.user_wallet_id(
            session=session, user_id=checked.recipient.id, asset=amount.asset.code
        )
    return TransferSpec(
        debit_account_id=checked.source_account_id,
        credit_account_id=target,
        asset=amount.asset.code,
        amount_minor=amount.amount_minor,
        code="p2p",
        note=note,
        guard=limits_engine.guard(user=sender, operation=Operation.P2P_SEND, settings=settings),
    )
