"""Peer-to-peer transfers between users of one region (R-P2P-1, R-REGION-1)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from strongroom.errors import DomainError, NotFound
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.money import Money


def send(*, session: Session, sender: User, to: str, amount: Money, note: str | None) -> str:
    spec = prepare_send(session=session, sender=sender, to=to, amount=amount, note=note)
    return ledger.transfer(session=session, spec=spec)


def prepare_send(
    *, session: Session, sender: User, to: str, amount: Money, note: str | None
) -> TransferSpec:
    """Check the recipient and name both wallets; the transfer is left to the caller."""
    recipient = identity.find_user(session=session, reference=to)
    if recipient is None or recipient.operator_role is not None:
        raise NotFound("no user with that email or id", code="recipient_not_found")
    if recipient.id == sender.id:
        raise DomainError("you cannot send money to yourself", code="same_account")
    if recipient.region != sender.region:
        raise DomainError(
            "transfers between regions are not possible",
            code="cross_region_transfer",
            from_region=sender.region,
            to_region=recipient.region,
        )
    source = ledger.user_wallet_id(session=session, user_id=sender.id, asset=amount.asset.code)
    target = ledger.user_wallet_id(session=session, user_id=recipient.id, asset=amount.asset.code)
    return TransferSpec(
        debit_account_id=source,
        credit_account_id=target,
        asset=amount.asset.code,
        amount_minor=amount.amount_minor,
        code="p2p",
        note=note,
    )
