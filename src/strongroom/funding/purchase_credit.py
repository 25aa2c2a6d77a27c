"""The credit of a purchase of crypto paid in fiat, when its payment is confirmed (issue #12).

``funding.topups.confirm`` calls ``buy`` for a top-up that carries a purchase's payment. The
purchase buys at its held price only when the payment is exactly the quoted amount and arrived
by ``held_until``; then two LINKED ledger legs move, both or neither:

- ``purchase:<id>.pay``: the operator's bank omnibus account (where the fiat arrived) -> the
  operator's FX account in the paid asset, the amount paid (code ``fx``);
- ``purchase:<id>.credit``: the operator's FX account in the bought asset -> the user's wallet,
  the quoted amount, T+N locked (``lock_s``, R-TN-1) and guarded by the limits engine as a
  top-up (code ``topup``: it counts in the user's top-up windows at its reference value).

The quoted amount was rounded down (``fx.domain.convert_minor``), so what the FX accounts keep
between the two legs is the spread and less than one minor unit of rounding, in the operator's
favour. Otherwise (late, or another amount) ``buy`` writes nothing and answers False: the
caller credits the money that arrived as a plain top-up in the paid asset, and the purchase's
``outcome`` is ``fiat_credited``. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import invariant
from strongroom.funding.models import Purchase
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.settings import Settings

TRANSFER_PREFIX: Final = "purchase:"
FX_ACCOUNT: Final = "fx"
OMNIBUS: Final = "bank_omnibus"
BOUGHT: Final = "bought"
FIAT_CREDITED: Final = "fiat_credited"
PAY_CODE: Final = "fx"
CREDIT_CODE: Final = "topup"


def pay_transfer_id(purchase_id: str) -> str:
    return f"{TRANSFER_PREFIX}{purchase_id}.pay"


def credit_transfer_id(purchase_id: str) -> str:
    return f"{TRANSFER_PREFIX}{purchase_id}.credit"


def of_topup(*, session: Session, topup_id: str) -> Purchase | None:
    """The purchase whose payment is this top-up, locked with it; None for a plain top-up."""
    return session.scalars(
        select(Purchase).where(Purchase.topup_id == topup_id).with_for_update()
    ).first()


def aware(moment: datetime) -> datetime:  # SQLite gives naive UTC
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


def buys(purchase: Purchase, received_minor: int, now: datetime) -> bool:
    """Whether a payment of ``received_minor`` at ``now`` buys at the held price."""
    return received_minor == purchase.pay_minor and now <= aware(purchase.held_until)


def buy(
    *,
    session: Session,
    purchase: Purchase,
    received_minor: int,
    now: datetime,
    settings: Settings | None,
) -> bool:
    """Write the two legs and mark the purchase ``bought``; False (nothing written) when the
    payment does not buy (see the module's docstring). A refusal of the legs (the limits'
    guard, max balance) raises and moves nothing."""
    invariant(purchase.outcome is None, "a purchase is credited once")
    if not buys(purchase, received_minor, now):
        purchase.outcome = FIAT_CREDITED
        purchase.updated_at = now
        return False
    guard = None
    if settings is not None:
        user = session.get_one(User, purchase.user_id)
        guard = limits.guard(user=user, operation=Operation.TOPUP, settings=settings)
    omnibus = ledger.operator_account(session=session, kind=OMNIBUS, asset=purchase.pay_asset)
    fx_paid = ledger.operator_account(session=session, kind=FX_ACCOUNT, asset=purchase.pay_asset)
    fx_sold = ledger.operator_account(session=session, kind=FX_ACCOUNT, asset=purchase.asset)
    wallet = ledger.user_wallet_id(session=session, user_id=purchase.user_id, asset=purchase.asset)
    note = f"{purchase.pay_asset}>{purchase.asset} purchase {purchase.quote_id}"
    legs = [
        TransferSpec(
            id=pay_transfer_id(purchase.id),
            debit_account_id=omnibus.id,
            credit_account_id=fx_paid.id,
            asset=purchase.pay_asset,
            amount_minor=purchase.pay_minor,
            code=PAY_CODE,
            note=note,
            linked=True,
        ),
        TransferSpec(
            id=credit_transfer_id(purchase.id),
            debit_account_id=fx_sold.id,
            credit_account_id=wallet,
            asset=purchase.asset,
            amount_minor=purchase.amount_minor,
            code=CREDIT_CODE,
            note=note,
            guard=guard,
            lock_s=purchase.lock_s,
        ),
    ]
    _raise_first(ledger.create_transfers(session=session, specs=legs, now=now))
    purchase.outcome = BOUGHT
    purchase.pay_transfer_id = legs[0].id
    purchase.credit_transfer_id = legs[1].id
    purchase.unlocks_at = now + timedelta(seconds=purchase.lock_s) if purchase.lock_s else None
    purchase.updated_at = now
    session.flush()
    return True


def _raise_first(results: Sequence[ledger.TransferResult]) -> None:
    """The refusal of the linked legs: the leg that failed, not the one failed with it."""
    errors = [result.error for result in results if result.error is not None]
    if not errors:
        return
    own = [error for error in errors if error.code != "linked_transfer_failed"]
    raise (own or errors)[0]
