"""The fast lane of ``POST /v1/transfers`` (issue #14): what the group commit does for a plain
P2P transfer that arrived without FastAPI's request path (``api.lane`` parses it on the event
loop and queues a ``LaneRequest`` on the ``Batcher``).

Inside the batch's own transaction, the reads a request would make one by one are made once for
the whole batch: the bearer tokens (live: not revoked, not expired) with their users, the
recipients (by user id or email) and both wallets. A request that is not plain (an unknown or
revoked token, an unverified sender, no such recipient, oneself, another region, no wallet on
either side) is not refused here: it is handed back (``None``) and the lane passes it, body and
all, to the FastAPI route, which answers it exactly as it always did. The rest become the same
``TransferSpec`` (with the limits guard: R-LIMIT-1 and the T+N locks are checked in this
transaction) and the same receipts as the route makes, and go through the batcher's claim,
``ledger.create_transfers`` and commit like any other job. The token is read in the transaction
that moves the money, so a revoked token stops working at once without a cache."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, tuple_
from sqlalchemy.orm import Session

from strongroom.identity import verification
from strongroom.identity.models import AuthToken, User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Account
from strongroom.limits import service as limits_engine
from strongroom.limits.rules import Operation
from strongroom.money import Money
from strongroom.movements.idempotency import SCOPE_MAX_CHARS, Claim
from strongroom.payments import receipts
from strongroom.payments.receipts import OnCommit
from strongroom.settings import Settings

OPERATION = "POST /v1/transfers"
"""The idempotency scope's operation: the route's ``METHOD path``, so that a key used on the
lane and on the route is one key."""


@dataclass(frozen=True, slots=True)
class LaneRequest:
    """A transfer request as the lane read it: nothing about it is checked against the
    database yet. ``to`` is as sent (the receipt shows it); the recipient is named by
    ``recipient_id`` (a ``u_...`` reference) or ``recipient_email`` (normalised)."""

    token_hash: str
    to: str
    recipient_id: str | None
    recipient_email: str | None
    amount: Money
    note: str | None
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """A plain request made ready for the group commit, as the route would have made it."""

    spec: TransferSpec
    claim: Claim
    on_commit: OnCommit


def resolve(
    *, session: Session, requests: Sequence[LaneRequest], settings: Settings, now: datetime
) -> list[Resolved | None]:
    """Each request's transfer, its key's claim and its receipts, or None where the request
    is not plain (the route answers it). Three statements for the whole batch."""
    users = _users_by_token(session, requests, now)
    recipients = _recipients(session, requests)
    wallets = _wallets(session, requests, users, recipients)
    by_id = {user.id: user for user in recipients}
    by_email = {user.email: user for user in recipients}
    resolved: list[Resolved | None] = []
    for request in requests:
        sender = users.get(request.token_hash)
        recipient = (
            by_id.get(request.recipient_id)
            if request.recipient_id is not None
            else by_email.get(request.recipient_email or "")
        )
        if sender is None or recipient is None or not _plain(sender, recipient, request):
            resolved.append(None)
            continue
        asset = request.amount.asset.code
        source = wallets.get((sender.id, asset))
        target = wallets.get((recipient.id, asset))
        if source is None or target is None:  # the route says why, or opens the wallet
            resolved.append(None)
            continue
        resolved.append(_resolved(request, sender, recipient, source, target, settings))
    return resolved


def _plain(sender: User, recipient: User, request: LaneRequest) -> bool:
    """What ``payments.check_send`` refuses before it reads balances, plus what the lane does
    not take at all (an operator's or an erased user's token): the route answers those."""
    return (
        verification.is_verified(sender)
        and sender.operator_role is None
        and sender.erased_at is None
        and recipient.operator_role is None
        and recipient.id != sender.id
        and recipient.region == sender.region
        and len(f"{sender.id}:{OPERATION}") <= SCOPE_MAX_CHARS
    )


def _resolved(
    request: LaneRequest,
    sender: User,
    recipient: User,
    source: int,
    target: int,
    settings: Settings,
) -> Resolved:
    """The route's transfer (``payments.service.spec_for``) and receipts for a plain request;
    its id is chosen now, so its key is stored with its outcome (``Batcher``)."""
    spec = TransferSpec(
        debit_account_id=source,
        credit_account_id=target,
        asset=request.amount.asset.code,
        amount_minor=request.amount.amount_minor,
        code="p2p",
        note=request.note,
        guard=limits_engine.guard(user=sender, operation=Operation.P2P_SEND, settings=settings),
        id=str(uuid.uuid4()),
    )
    claim = Claim(
        scope=f"{sender.id}:{OPERATION}", key=request.key, fingerprint=request.fingerprint
    )
    on_commit = receipts.receipts(
        sender=sender,
        recipient=recipient,
        to=request.to,
        amount=request.amount,
        note=request.note,
    )
    return Resolved(spec=spec, claim=claim, on_commit=on_commit)


def _users_by_token(
    session: Session, requests: Sequence[LaneRequest], now: datetime
) -> dict[str, User]:
    """``identity.authenticate`` for every request at once: live tokens only."""
    hashes = sorted({request.token_hash for request in requests})
    rows = session.execute(
        select(AuthToken.token_hash, User)
        .join(User, User.id == AuthToken.user_id)
        .where(
            AuthToken.token_hash.in_(hashes),
            AuthToken.revoked_at.is_(None),
            AuthToken.expires_at > now,
        )
    ).all()
    return {token_hash: user for token_hash, user in rows}


def _recipients(session: Session, requests: Sequence[LaneRequest]) -> list[User]:
    """The users named by id or email (an erased one is named by nothing)."""
    ids = sorted({r.recipient_id for r in requests if r.recipient_id is not None})
    emails = sorted({r.recipient_email for r in requests if r.recipient_email is not None})
    named: list[ColumnElement[bool]] = []
    if ids:
        named.append(User.id.in_(ids))
    if emails:
        named.append(User.email.in_(emails))
    if not named:
        return []
    return list(session.scalars(select(User).where(or_(*named), User.erased_at.is_(None))))


def _wallets(
    session: Session,
    requests: Sequence[LaneRequest],
    users: dict[str, User],
    recipients: list[User],
) -> dict[tuple[str, str], int]:
    """(owner id, asset) -> wallet id, for the senders and recipients in the batch."""
    assets = {request.amount.asset.code for request in requests}
    owners = {user.id for user in users.values()} | {user.id for user in recipients}
    pairs = sorted((owner, asset) for owner in owners for asset in assets)
    if not pairs:
        return {}
    rows = session.execute(
        select(Account.owner_id, Account.asset, Account.id).where(
            and_(
                Account.owner_type == ledger.USER,
                Account.kind == "wallet",
                tuple_(Account.owner_id, Account.asset).in_(pairs),
            )
        )
    ).all()
    return {(owner_id, asset): int(account_id) for owner_id, asset, account_id in rows}
