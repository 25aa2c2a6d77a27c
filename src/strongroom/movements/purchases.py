"""A purchase at an FX quote (issue #12): takes the user's live quote and opens the purchase
through a paying channel (``funding.purchases``). Here, above both ``fx`` and ``funding``,
because it joins them.

A quote is spent once, by a conversion or by a purchase: the quote's row is locked (as a
conversion locks it), a quote already converted or bought is ``quote_used``, and once bought its
``expires_at`` is brought to the moment it was taken, so a conversion of it afterwards is
refused (``quote_expired``). The purchase holds the price from then on (``held_until``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import Conflict
from strongroom.funding import purchase_credit, purchases
from strongroom.funding.models import Purchase
from strongroom.fx import service as fx
from strongroom.fx.models import FxConversion
from strongroom.identity.models import User
from strongroom.money import AssetRegistry, Money
from strongroom.settings import Settings


def buy(
    *,
    session: Session,
    user: User,
    quote_id: str,
    channel: str,
    settings: Settings,
    assets: AssetRegistry,
    now: datetime | None = None,
) -> Purchase:
    """Buy at ``quote_id`` paying through ``channel``. Refused, nothing written:
    ``quote_not_found`` (404), ``quote_used`` / ``quote_expired`` (409), and
    ``funding.purchases.open_purchase``'s refusals."""
    now = now or utcnow()
    row = fx.own_quote(session=session, user=user, quote_id=quote_id, lock=True)
    converted = session.scalar(select(FxConversion.id).where(FxConversion.quote_id == row.id))
    if converted is not None or purchases.by_quote(session=session, quote_id=row.id) is not None:
        raise Conflict("this quote was used already", code="quote_used")
    if now >= purchase_credit.aware(row.expires_at):
        raise Conflict(
            "the quote has expired: ask for a new one",
            code="quote_expired",
            expired_at=row.expires_at.isoformat(),
        )
    terms = purchases.Terms(
        quote_id=row.id,
        paid=Money(row.from_minor, assets.get(row.from_asset)),
        bought=Money(row.to_minor, assets.get(row.to_asset)),
        rate=row.rate,
    )
    purchase = purchases.open_purchase(
        session=session, user=user, terms=terms, channel=channel, settings=settings, now=now
    )
    row.expires_at = now  # spent: no conversion may use it now
    session.flush()
    return purchase
