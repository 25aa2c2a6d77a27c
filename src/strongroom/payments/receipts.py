"""Receipt emails for a P2P transfer (R-P2P-1): one to the sender, one to the recipient, through
the outbox with each one's anti-phishing code. Rendered while the request is checked (in the
request's thread, not the ledger's one batching thread) and written in the very transaction
that moves the money (``movements.batcher.OnCommit``): a refused transfer sends none, a
committed one both, and a replay of its idempotency key sends nothing again. The API and the
Lite app hand ``prepare_send`` 's pair to the money-movement service as a ``Prepared``."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.identity import names
from strongroom.identity.models import User
from strongroom.ledger.domain import TransferSpec
from strongroom.money import Money, format_amount
from strongroom.notify import outbox
from strongroom.payments import service
from strongroom.settings import LedgerLimits, Settings

OnCommit = Callable[[Session, str], None]  # movements.batcher.OnCommit (a layer above)
SENT = "payments.p2p_sent"
RECEIVED = "payments.p2p_received"


def receipts(
    *,
    sender: outbox.Recipient,
    recipient: outbox.Recipient,
    to: str,
    amount: Money,
    note: str | None,
) -> Receipts:
    """The writer of both receipts once the transfer has its id (a ``User`` or what the
    transfers' fast lane read of one, ``movements.lane.Party``)."""
    placeholder = "TRANSFERID" + secrets.token_hex(16)  # nobody can type it into a note
    shown = f"{amount.asset.code} {format_amount(amount.amount_minor, amount.asset.scale)}"
    common: dict[str, object] = {
        "amount": shown,
        "transfer_id": placeholder,
        "note": note,
        "at": utcnow(),
    }
    return Receipts(
        placeholder=placeholder,
        emails=(
            outbox.defer_to_user(
                user=sender,
                template_id=SENT,
                context={**common, "counterparty": names.masked(recipient.name), "reference": to},
            ),
            outbox.defer_to_user(
                user=recipient,
                template_id=RECEIVED,
                context={**common, "counterparty": names.masked(sender.name)},
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class Receipts:
    """Both receipts of one transfer, rendered, waiting for its id: an ``OnCommit`` (writes
    them in the session's transaction), and ``rows`` for a writer that gathers the receipts of
    many transfers into one statement (the group commit: ``outbox.insert_rows``)."""

    placeholder: str
    emails: tuple[outbox.PreparedEmail, ...]

    def rows(self, transfer_id: str, now: datetime) -> list[dict[str, object]]:
        return [
            outbox.prepared_row(email, replace={self.placeholder: transfer_id}, now=now)
            for email in self.emails
        ]

    def __call__(self, session: Session, transfer_id: str) -> None:
        outbox.insert_rows(session, self.rows(transfer_id, utcnow()))


def prepare_send(
    *,
    session: Session,
    sender: User,
    to: str,
    amount: Money,
    note: str | None,
    limits: LedgerLimits,
    settings: Settings,
) -> tuple[TransferSpec, OnCommit]:
    """``payments.service.prepare_send`` with both receipts to write when it commits."""
    checked = service.check_send(
        session=session,
        sender=sender,
        to=to,
        amount=amount,
        note=note,
        limits=limits,
        settings=settings,
    )
    spec = service.spec_for(
        session=session,
        sender=sender,
        checked=checked,
        amount=amount,
        note=note,
        settings=settings,
    )
    on_commit = receipts(
        sender=sender, recipient=checked.recipient, to=to, amount=amount, note=note
    )
    return spec, on_commit
