"""Top-ups: money arrives in the operator's bank omnibus account and is credited to the user."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from strongroom.funding.connectors import available, connector
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.money import Money
from strongroom.settings import Settings


@dataclass(frozen=True, slots=True)
class Topup:
    id: str
    status: str


def channels(settings: Settings) -> list[str]:
    """The top-up channels this installation offers (none in production yet)."""
    return sorted(available(settings))


def prepare_topup(
    *, session: Session, user: User, amount: Money, channel: str, settings: Settings
) -> TransferSpec:
    """Confirm with the channel, then name the accounts; the transfer itself is left to the
    caller (directly, or through the group-commit batcher). An unknown or disabled channel
    (``unknown_channel``), an amount over the user's tier limits or over the channel's cap
    (``limit_exceeded``) is refused before anything is written. The transfer carries the
    limits' guard (checked again where it is applied) and, for a crypto asset bought through
    this fiat channel, its T+N lock (R-TN-1)."""
    verification.require_verified(user)  # R-SEC-11: email_unverified before anything else
    channel_connector = connector(channel, settings)
    limits.check(
        session=session, user=user, operation=Operation.TOPUP, amount=amount, settings=settings
    )
    confirmation = channel_connector.request(user_id=user.id, amount=amount, reference=user.id)
    if not confirmation.confirmed:
        # Real channels confirm by webhook; none exists yet, so this cannot happen today.
        raise NotImplementedError("asynchronous top-up channels are not built yet")
    wallet = ledger.user_wallet_id(session=session, user_id=user.id, asset=amount.asset.code)
    omnibus = ledger.ensure_account_id(
        session=session,
        owner_type=ledger.OPERATOR,
        owner_id=ledger.OPERATOR,
        kind="bank_omnibus",
        asset=amount.asset.code,
        allow_negative=True,
    )
    return TransferSpec(
        debit_account_id=omnibus,
        credit_account_id=wallet,
        asset=amount.asset.code,
        amount_minor=amount.amount_minor,
        code="topup",
        note=f"{channel_connector.name} top-up",
        guard=limits.guard(user=user, operation=Operation.TOPUP, settings=settings),
        lock_s=limits.hold_seconds(user=user, asset=amount.asset.code, settings=settings),
    )


def topup(
    *, session: Session, user: User, amount: Money, channel: str, settings: Settings
) -> Topup:
    spec = prepare_topup(
        session=session, user=user, amount=amount, channel=channel, settings=settings
    )
    return Topup(id=ledger.transfer(session=session, spec=spec), status="completed")
