"""Purchases of crypto paid in fiat at a quote, through a top-up channel (issue #12, R-FUND-1,
R-TN-1, R-FX-1).

The user takes an FX quote (``POST /v1/fx/quotes``: pay HKD 1,000, receive BTC x), then buys at
it with a paying channel. A quote lives 10 seconds, which no bank transfer or card checkout can
meet, so **the purchase holds the quote's price for ``funding.purchase_hold_s`` (30 minutes)
from the moment the user buys: the operator carries that market risk** (a setting, sized to the
card checkout's window). The payment is an ordinary pending top-up of the paid asset (its
reference, instructions, webhooks, expiry, sandbox scenarios); what confirms it decides:

- the quoted amount, by ``held_until``: bought at the held price (``purchase_credit.buy``: two
  linked legs through the operator's FX accounts, the bought asset T+N locked);
- later, or another amount: the money that arrived is credited as a plain top-up of the paid
  asset (``outcome`` ``fiat_credited``), never bought at a stale price or for another sum;
- a failure, an expiry: nothing moves.

Channels that carry a purchase (``PURCHASE_CHANNELS``): ``card`` (the checkout completes within
the hold), ``fps`` (a transfer usually arrives in seconds; one that arrives after the hold is
credited in HKD as above) and the ``sandbox`` (confirmed at once, or its failure paths by the
amount's last two digits, ``funding.connectors``). Not ``store_cash``: cash counted at a counter
is a top-up, and the terminal's confirmation knows nothing of prices.

Limits: the tier's top-up limits and max balance for the fiat paid, at request and at
confirmation (as every top-up), and the top-up limits for the bought asset at its reference
value (the ledger's guard on the credit leg). Nothing here commits.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import DomainError, NotFound, ValidationFailed
from strongroom.funding import connectors, purchase_credit, topups
from strongroom.funding.connectors import Scenario
from strongroom.funding.models import Purchase, Topup
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.money import Money
from strongroom.settings import Settings

PURCHASE_CHANNELS: Final = (connectors.CARD, connectors.FPS, connectors.SANDBOX)
ID_PREFIX: Final = "pu_"


class NotAPurchase(DomainError):
    """A quote that does not pay fiat for a crypto asset cannot be bought through a channel."""

    code = "not_a_purchase"
    status = 422


@dataclass(frozen=True, slots=True)
class Terms:
    """What the user accepted (a live FX quote's amounts): ``paid`` for ``bought``."""

    quote_id: str
    paid: Money
    bought: Money
    rate: str


def channels(settings: Settings) -> list[str]:
    """The channels this installation offers that carry a purchase."""
    offered = connectors.pending_connectors(settings)
    return [name for name in PURCHASE_CHANNELS if name in offered]


def open_purchase(
    *,
    session: Session,
    user: User,
    terms: Terms,
    channel: str,
    settings: Settings,
    now: datetime | None = None,
) -> Purchase:
    """Open the purchase and its payment (see the module's docstring). Refused before anything
    is written: ``unknown_channel`` (``details.channels``: those that carry a purchase),
    ``not_a_purchase``, ``limit_exceeded``; the sandbox's plain purchases confirm at once."""
    verification.require_verified(user)
    offered = channels(settings)
    if channel not in offered:
        raise ValidationFailed(
            f"channel {channel[:32]!r} cannot pay for a purchase",
            code="unknown_channel",
            channels=offered,
        )
    kinds = limits.prices_of(settings, session)
    if kinds.kind(terms.paid.asset.code) != "fiat" or kinds.kind(terms.bought.asset.code) != (
        "crypto"
    ):
        raise NotAPurchase(
            "a purchase pays a fiat asset for a crypto asset: quote from fiat to crypto",
            pay_asset=terms.paid.asset.code,
            asset=terms.bought.asset.code,
        )
    limits.check(
        session=session,
        user=user,
        operation=Operation.TOPUP,
        amount=terms.bought,
        settings=settings,
    )
    now = now or utcnow()
    record = topups.request(
        session=session, user=user, amount=terms.paid, channel=channel, settings=settings, now=now
    )
    purchase = Purchase(
        id=ID_PREFIX + secrets.token_hex(10),
        user_id=user.id,
        topup_id=record.id,
        quote_id=terms.quote_id,
        asset=terms.bought.asset.code,
        amount_minor=terms.bought.amount_minor,
        pay_asset=terms.paid.asset.code,
        pay_minor=terms.paid.amount_minor,
        rate=terms.rate,
        held_until=now + timedelta(seconds=settings.funding.purchase_hold_s),
        lock_s=limits.hold_seconds(user=user, asset=terms.bought.asset.code, settings=settings),
        created_at=now,
        updated_at=now,
    )
    session.add(purchase)
    session.flush()
    if channel == connectors.SANDBOX:
        _sandbox(session, record, terms.paid, settings, now)
    return purchase


def _sandbox(
    session: Session, record: Topup, paid: Money, settings: Settings, now: datetime
) -> None:
    """The sandbox pays at once, or takes its failure path by the amount paid."""
    scenario = connectors.sandbox_scenario(paid)
    if scenario == Scenario.FAIL:
        topups.fail(session=session, topup=record, reason="sandbox_declined", now=now)
        return
    if scenario == Scenario.TIME_OUT:
        return  # pending: the worker's next poll confirms it (``topups.poll_sandbox``)
    times = 2 if scenario == Scenario.CONFIRM_TWICE else 1
    for _ in range(times):
        topups.confirm(
            session=session,
            topup=record,
            received_minor=paid.amount_minor,
            now=now,
            settings=settings,
        )


def of_user(*, session: Session, user: User, purchase_id: str) -> tuple[Purchase, Topup]:
    """The user's own purchase and its payment; another's is ``purchase_not_found``."""
    found = session.execute(
        select(Purchase, Topup)
        .join(Topup, Topup.id == Purchase.topup_id)
        .where(Purchase.id == purchase_id, Purchase.user_id == user.id)
    ).first()
    if found is None:
        raise NotFound("no such purchase", code="purchase_not_found")
    return found[0], found[1]


def by_quote(*, session: Session, quote_id: str) -> Purchase | None:
    return session.scalars(select(Purchase).where(Purchase.quote_id == quote_id)).first()


def status(purchase: Purchase, payment: Topup) -> str:
    """``pending``, ``completed`` (bought), ``fiat_credited`` (paid late or another amount: the
    money is in the user's fiat wallet), ``failed`` or ``expired`` (nothing moved)."""
    if payment.status == topups.CONFIRMED:
        bought = purchase.outcome == purchase_credit.BOUGHT
        return "completed" if bought else purchase_credit.FIAT_CREDITED
    return topups.api_status(payment)
