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
from typing import Any

from sqlalchemy.orm import Session

from strongroom.db import DriverStatement, driver_rows, pg_array
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
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
    is not plain (the route answers it). ONE statement for the whole batch (PostgreSQL: the
    lane runs only there)."""
    rows = driver_rows(
        session,
        _VIEW,
        {
            "hashes": pg_array(r.token_hash for r in requests),
            "ids": pg_array(r.recipient_id for r in requests),
            "emails": pg_array(r.recipient_email for r in requests),
            "assets": pg_array(r.amount.asset.code for r in requests),
            "now": now,
            "owner_type": ledger.USER,
        },
    )
    found = {int(row[0]) - 1: row for row in rows}
    resolved: list[Resolved | None] = []
    for index, request in enumerate(requests):
        row = found.get(index)
        if row is None or not _plain(row):
            resolved.append(None)
            continue
        sender = Party(id=row[1], email=row[2], name=row[3], anti_phishing_code=row[4])
        recipient = Party(id=row[8], email=row[9], name=row[10], anti_phishing_code=row[11])
        guard = limits_engine.LimitGuard(
            user_id=sender.id, tier=row[6], operation=Operation.P2P_SEND, settings=settings
        )
        resolved.append(_resolved(request, sender, recipient, int(row[14]), int(row[15]), guard))
    return resolved


@dataclass(frozen=True, slots=True)
class Party:
    """What the receipts read of a user (``notify.outbox.Recipient``)."""

    id: str
    email: str
    name: str
    anti_phishing_code: str | None


_VIEW = DriverStatement(
    """
    SELECT i.n,
           s.id, s.email, s.name, s.anti_phishing_code, s.region, s.kyc_tier, s.ok,
           r.id, r.email, r.name, r.anti_phishing_code, r.region, r.ok,
           sw.id, rw.id
    FROM unnest(CAST(:hashes AS text[]), CAST(:ids AS text[]), CAST(:emails AS text[]),
                CAST(:assets AS text[]))
         WITH ORDINALITY AS i(token_hash, ref_id, ref_email, asset, n)
    JOIN LATERAL (
        SELECT u.id, u.email, u.name, u.anti_phishing_code, u.region, u.kyc_tier,
               u.email_verified_at IS NOT NULL AND u.operator_role IS NULL
               AND u.erased_at IS NULL AS ok
          FROM auth_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = i.token_hash AND t.revoked_at IS NULL AND t.expires_at > :now
         LIMIT 1
    ) s ON true
    JOIN LATERAL (
        SELECT u.id, u.email, u.name, u.anti_phishing_code, u.region, u.operator_role IS NULL AS ok
          FROM users u
         WHERE u.id = COALESCE(i.ref_id, (SELECT e.id FROM users e WHERE e.email = i.ref_email))
           AND u.erased_at IS NULL
         LIMIT 1
    ) r ON true
    JOIN LATERAL (
        SELECT a.id FROM ledger_accounts a
         WHERE a.owner_type = :owner_type AND a.owner_id = s.id AND a.kind = 'wallet'
           AND a.asset = i.asset
         LIMIT 1
    ) sw ON true
    JOIN LATERAL (
        SELECT a.id FROM ledger_accounts a
         WHERE a.owner_type = :owner_type AND a.owner_id = r.id AND a.kind = 'wallet'
           AND a.asset = i.asset
         LIMIT 1
    ) rw ON true
    """
)
"""Per request (``n``, from 1): the token's live session's user (``identity.authenticate``),
whether that user may send on the lane (verified: R-SEC-11; not an operator, not erased), the
recipient named by id or email (not erased: an erased account is named by nothing), whether it
may receive (not an operator), and both wallets in the asset. Each is a lookup by a unique key
per request (``LATERAL ... LIMIT 1``: planned alone, cheap to plan, an index probe whatever the
table statistics say). A request with no row is not plain: an unknown, revoked or expired token,
no such recipient, or a wallet missing (the route refuses, or opens the recipient's wallet)."""


def _plain(row: Sequence[Any]) -> bool:
    """What ``payments.check_send`` refuses before it reads balances, and what the lane does
    not take at all (an operator's or an erased user's token): the route answers those."""
    sender_ok, sender_region, recipient_ok, recipient_region = row[7], row[5], row[13], row[12]
    return (
        bool(sender_ok)
        and bool(recipient_ok)
        and row[8] != row[1]  # not oneself
        and recipient_region == sender_region
        and len(f"{row[1]}:{OPERATION}") <= SCOPE_MAX_CHARS
    )


def _resolved(
    request: LaneRequest,
    sender: Party,
    recipient: Party,
    source: int,
    target: int,
    guard: limits_engine.LimitGuard,
) -> Resolved:
    """The route's transfer (``payments.service.spec_for``, with the limits guard: R-LIMIT-1
    and the T+N locks are checked when it is applied) and receipts for a plain request; its id
    is chosen now, so its key is stored with its outcome (``Batcher``)."""
    spec = TransferSpec(
        debit_account_id=source,
        credit_account_id=target,
        asset=request.amount.asset.code,
        amount_minor=request.amount.amount_minor,
        code="p2p",
        note=request.note,
        guard=guard,
        id=str(uuid.uuid4()),
        new_id=True,
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
