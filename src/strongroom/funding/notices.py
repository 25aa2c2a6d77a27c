"""The emails of top-ups and purchases (issue #12): through the outbox, in the transaction that
changes the record, with the user's anti-phishing code (``notify.outbox.send_to_user``).

Each is written where the record changes state (``funding.topups``: a confirmation that credits,
a failure that marks it failed), never on a duplicate or ignored notification: one email per
top-up or purchase however many times the connector repeats itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from strongroom.funding import purchase_credit
from strongroom.funding.models import Purchase, Topup
from strongroom.identity.models import User
from strongroom.money import BUILTIN_ASSETS, AssetRegistry, format_amount
from strongroom.notify import outbox
from strongroom.settings import Settings


def _shown(code: str, amount_minor: int, registry: AssetRegistry) -> str:
    return f"{code} {format_amount(amount_minor, registry.get(code).scale)}"


def _registry(settings: Settings | None) -> AssetRegistry:
    return settings.asset_registry() if settings is not None else AssetRegistry(BUILTIN_ASSETS)


def confirmed(
    *,
    session: Session,
    topup: Topup,
    purchase: Purchase | None,
    now: datetime,
    settings: Settings | None,
) -> None:
    """A top-up credited: ``funding.topup_completed``; a purchase bought:
    ``funding.purchase_completed``; a purchase whose payment was credited in fiat instead:
    ``funding.purchase_failed`` (saying what was credited)."""
    user = session.get_one(User, topup.user_id)
    registry = _registry(settings)
    received = _shown(topup.asset, topup.received_minor or 0, registry)
    if purchase is None:
        outbox.send_to_user(
            session=session,
            user=user,
            template_id="funding.topup_completed",
            context={"amount": received, "channel": topup.channel, "topup_id": topup.id, "at": now},
            now=now,
        )
        return
    if purchase.outcome == purchase_credit.BOUGHT:
        outbox.send_to_user(
            session=session,
            user=user,
            template_id="funding.purchase_completed",
            context={
                **_purchase_context(purchase, registry, now),
                "unlocks_at": purchase.unlocks_at,
            },
            now=now,
        )
        return
    purchase_failed(
        session=session, purchase=purchase, now=now, settings=settings, credited=received
    )


def purchase_failed(
    *,
    session: Session,
    purchase: Purchase,
    now: datetime,
    settings: Settings | None = None,
    credited: str | None = None,
) -> None:
    """``funding.purchase_failed``: the payment failed (``credited`` None) or was credited in
    the paid asset instead (``credited``: what)."""
    user = session.get_one(User, purchase.user_id)
    outbox.send_to_user(
        session=session,
        user=user,
        template_id="funding.purchase_failed",
        context={**_purchase_context(purchase, _registry(settings), now), "credited": credited},
        now=now,
    )


def _purchase_context(
    purchase: Purchase, registry: AssetRegistry, now: datetime
) -> dict[str, object]:
    return {
        "amount": _shown(purchase.asset, purchase.amount_minor, registry),
        "paid": _shown(purchase.pay_asset, purchase.pay_minor, registry),
        "purchase_id": purchase.id,
        "at": now,
    }
