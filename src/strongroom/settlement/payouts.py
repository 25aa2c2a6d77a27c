"""One payout to a bank account, in three steps each safe to repeat (R-MERCH-3).

1. ``hold``: a pending transfer with a deterministic id (merchant wallet → the operator's
   ``payout_clearing`` account), committed before the bank is asked, so a crash after it finds
   the hold again (the ledger answers "exists" for the same id and fields).
2. ``ask``: the payout connector, given the same ``payout_id`` every time (``send`` the first
   time, ``poll`` after a time-out or a restart). A connector must treat a repeated
   ``payout_id`` as the same payout (the sandbox is stateless; a real bank dedupes on the
   reference we give it): that is what makes a crash between "the bank paid" and "we wrote it
   down" pay once.
3. ``resolve``: posted when the connector confirms (once, however many confirmations arrive),
   voided when it fails (the money back on the merchant's wallet)."""

from __future__ import annotations

from typing import Final

from sqlalchemy.orm import Session

from strongroom.funding.connectors import PayoutAnswer, PayoutConnector, PayoutStatus
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.money import Money

CLEARING_KIND: Final = "payout_clearing"


def hold(
    *, session: Session, payout_id: str, source: int, asset: str, amount_minor: int, code: str
) -> None:
    clearing = ledger.operator_account(session=session, kind=CLEARING_KIND, asset=asset).id
    ledger.transfer(
        session=session,
        spec=TransferSpec(
            kind=TransferKind.PENDING,
            id=payout_id,
            debit_account_id=source,
            credit_account_id=clearing,
            asset=asset,
            amount_minor=amount_minor,
            code=code,
            note=f"payout {payout_id}",
        ),
    )


def ask(
    connector: PayoutConnector, *, payout_id: str, account_number: str, amount: Money, again: bool
) -> PayoutAnswer:
    """Send, or ``again``: poll; a poll answering ``unknown`` (the send never arrived) is sent
    again at once under the same payout id, which the connector dedupes (``PayoutConnector``)."""
    if again:
        answer = connector.poll(payout_id=payout_id, account_number=account_number, amount=amount)
        if answer.status != PayoutStatus.UNKNOWN:
            return answer
    return connector.send(payout_id=payout_id, account_number=account_number, amount=amount)


def resolve(*, session: Session, payout_id: str, answer: PayoutAnswer) -> None:
    """Post (paid) or void (failed) the hold; nothing for a time-out or an unknown reference
    (nothing was paid or refused: the money stays held). Repeating it is safe."""
    if answer.status in (PayoutStatus.TIMED_OUT, PayoutStatus.UNKNOWN):
        return
    kind = (
        TransferKind.POST_PENDING
        if answer.status == PayoutStatus.PAID
        else TransferKind.VOID_PENDING
    )
    suffix = "post" if kind is TransferKind.POST_PENDING else "void"
    ledger.transfer(
        session=session,
        spec=TransferSpec(kind=kind, id=f"{payout_id}.{suffix}", pending_id=payout_id),
    )
