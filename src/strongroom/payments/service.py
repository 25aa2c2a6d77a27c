"""Peer-to-peer transfers between users of one region (R-P2P-1, R-REGION-1)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from strongroom.errors import DomainError, InsufficientFunds, NotFound
from strongroom.identity import service as identity
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.limits import service as limits_engine
from strongroom.limits.rules import Operation
from strongroom.money import Money
from strongroom.settings import LedgerLimits, Settings, get_settings


@dataclass(frozen=True, slots=True)
class CheckedSend:
    """A transfer that would go through now: who receives it, from which wallet."""

    recipient: User
    source_account_id: int


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
    - pending), then the limits engine (``p2p_send``: locked money, R-TN-2, and the tier's
    limits, R-LIMIT-1), so a refused send creates no wallet either."""
    verification.require_verified(sender)  # R-SEC-11: email_unverified before anything else
    if note is not None and len(note) > limits.note_max_chars:
        raise DomainError(
            f"note is longer than {limits.note_max_chars} characters", code="invalid_note"
        )
    recipient = identity.find_user(session=session, reference=to, region=sender.region)
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
    asset = amount.asset.code
    source = ledger.user_wallet_id_if_any(session=session, user_id=sender.id, asset=asset)
    held = None if source is None else ledger.balance(session=session, account_id=source)
    if (
        source is None
        or held is None
        or amount.amount_minor > held.total_minor - held.pending_minor
    ):
        available_minor = 0 if held is None else held.available_minor
        raise InsufficientFunds(
            "insufficient funds",
            account_id=source,
            asset=asset,
            available_minor=str(max(available_minor, 0)),
            requested_minor=str(amount.amount_minor),
        )
    limits_engine.check(
        session=session,
        user=sender,
        operation=Operation.P2P_SEND,
        amount=amount,
        settings=settings or get_settings(),
        account_id=source,
    )
    return CheckedSend(recipient=recipient, source_account_id=source)


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
