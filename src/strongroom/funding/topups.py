"""Top-ups that a connector confirms later (R-FUND-1): the record, its states and the one credit.

A top-up is ``requested`` (instructions shown: reference, card session, barcode), then
``confirmed`` (credited), ``failed`` or ``expired`` (past its validity, by the worker's sweep).
The credit is the ledger transfer ``topup:<id>`` from the operator's bank omnibus account to the
user's wallet, of the amount the connector says arrived: the deterministic id and the record's
row lock make a second confirmation move nothing. The rules for notifications out of order:

- confirm a requested or expired top-up: credited (money that arrived late still arrived; a
  store terminal, whose cash is still at the counter, is refused after expiry instead);
- confirm a confirmed one: ``duplicate``, nothing moves;
- confirm a failed one: refused (409 ``topup_already_failed``), nothing moves;
- fail a requested or expired one: ``failed``; fail a confirmed one: ``ignored`` (recorded).

A top-up that carries a purchase's payment (``funding.purchases``) buys the crypto at the
held price instead of crediting the fiat (``purchase_credit.buy``), when the quoted amount
arrives in time; otherwise the fiat is credited as above. Each confirmation that credits, and
each failure of a purchase's payment, writes one email to the outbox (``funding.notices``): a
duplicate or ignored notification writes none.

Nothing here commits: the caller's unit of work does.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.db import is_postgres, utcnow
from strongroom.errors import Conflict, DomainError, NotFound, ValidationFailed, invariant
from strongroom.funding import connectors, notices, purchase_credit
from strongroom.funding.connectors import Opening, Scenario
from strongroom.funding.models import Topup
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.money import Money
from strongroom.settings import Settings

REQUESTED: Final = "requested"
CONFIRMED: Final = "confirmed"
FAILED: Final = "failed"
EXPIRED: Final = "expired"
TRANSFER_PREFIX: Final = "topup:"
TRANSFER_CODE: Final = "topup"
OMNIBUS: Final = "bank_omnibus"

# what a notification did (``funding_webhook_deliveries.outcome``, the terminal's answer)
CREDITED: Final = "credited"
DUPLICATE: Final = "duplicate"
IGNORED: Final = "ignored"
MARKED_FAILED: Final = "failed"

API_STATUS: Final = {REQUESTED: "pending", CONFIRMED: "completed", FAILED: "failed"}
"""The status ``POST /v1/topups`` and ``GET /v1/topups/{id}`` answer with (expired: expired)."""


def api_status(record: Topup) -> str:
    return API_STATUS.get(record.status, record.status)


def transfer_id_of(topup_id: str) -> str:
    return TRANSFER_PREFIX + topup_id


@dataclass(frozen=True, slots=True)
class Applied:
    """What a confirmation or failure did to a top-up (``outcome``) and where it stands."""

    topup: Topup
    outcome: str


def request(
    *,
    session: Session,
    user: User,
    amount: Money,
    channel: str,
    settings: Settings,
    now: datetime | None = None,
) -> Topup:
    """Open a pending top-up with the channel's connector: ``unknown_channel`` for a channel this
    installation does not offer (the sandbox's plain confirmations go through
    ``funding.service.prepare_topup`` instead)."""
    verification.require_verified(user)
    connector = connectors.pending_connectors(settings).get(channel)
    if connector is None:
        raise connectors.unknown_channel(channel, settings)
    if channel == connectors.SANDBOX:
        connectors.SandboxConnector(dict(settings.funding.sandbox_max_topup)).check_cap(amount)
    check_topup_limits(session=session, user=user, amount=amount, settings=settings)
    opening = connector.open(amount=amount)
    return _record(session, user, amount, channel, opening, now or utcnow())


def _record(
    session: Session, user: User, amount: Money, channel: str, opening: Opening, now: datetime
) -> Topup:
    record = Topup(
        id="tu_" + secrets.token_hex(10),
        user_id=user.id,
        channel=channel,
        asset=amount.asset.code,
        amount_minor=amount.amount_minor,
        status=REQUESTED,
        external_reference=opening.reference,
        expires_at=now + opening.valid_for,
        created_at=now,
        updated_at=now,
    )
    session.add(record)
    session.flush()
    return record


def sandbox(*, session: Session, user: User, amount: Money, settings: Settings) -> Applied:
    """The sandbox's failure paths (``connectors.sandbox_scenario``): a failed, pending (timed
    out) or twice-confirmed top-up, with its record. A plain confirmation is not one of them:
    it goes through ``funding.service.prepare_topup`` (the caller checks first)."""
    scenario = connectors.sandbox_scenario(amount)
    invariant(scenario != Scenario.CONFIRM, "the sandbox's plain top-ups confirm at once")
    record = request(
        session=session, user=user, amount=amount, channel=connectors.SANDBOX, settings=settings
    )
    if scenario == Scenario.FAIL:
        return fail(session=session, topup=record, reason="sandbox_declined")
    if scenario == Scenario.TIME_OUT:
        return Applied(record, "timed_out")
    first = confirm(session=session, topup=record, received_minor=amount.amount_minor)
    second = confirm(session=session, topup=record, received_minor=amount.amount_minor)
    return Applied(second.topup, first.outcome)


def check_topup_limits(*, session: Session, user: User, amount: Money, settings: Settings) -> None:
    """The limits of a top-up that confirms later, at request and at confirmation (R-FUND-1
    "top-ups respect max balance and tier limits"; the same check as ``funding.service``'s
    top-ups): the tier's per-transaction, day and year amounts and max balance. A refusal
    raised at confirmation time moves nothing and leaves the top-up as it was (the delivery is
    recorded as ``refused``; the money that arrived is the operator's to send back)."""
    limits.check(
        session=session, user=user, operation=Operation.TOPUP, amount=amount, settings=settings
    )


def find(*, session: Session, topup_id: str, for_update: bool = False) -> Topup:
    query = select(Topup).where(Topup.id == topup_id)
    if for_update:
        query = query.with_for_update()
    found = session.scalars(query).first()
    if found is None:
        raise NotFound("no such top-up", code="topup_not_found")
    return found


def of_user(*, session: Session, user: User, topup_id: str) -> Topup:
    """The user's own top-up; another user's is ``topup_not_found`` as a missing one is."""
    found = session.scalars(
        select(Topup).where(Topup.id == topup_id, Topup.user_id == user.id)
    ).first()
    if found is None:
        raise NotFound("no such top-up", code="topup_not_found")
    return found


def recent_of_user(*, session: Session, user: User, limit: int = 10) -> list[Topup]:
    return list(
        session.scalars(
            select(Topup)
            .where(Topup.user_id == user.id)
            .order_by(Topup.created_at.desc(), Topup.id)
            .limit(limit)
        )
    )


def by_reference(*, session: Session, channel: str, reference: str) -> Topup:
    """The channel's top-up with this external reference, locked for the notification."""
    found = session.scalars(
        select(Topup)
        .where(Topup.channel == channel, Topup.external_reference == reference)
        .with_for_update()
    ).first()
    if found is None:
        raise NotFound(
            "no top-up has this reference", code="topup_not_found", reference=reference[:64]
        )
    return found


def confirm(
    *,
    session: Session,
    topup: Topup,
    received_minor: int,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> Applied:
    """Credit the amount that arrived, once (see the module's rules). ``topup`` must be locked
    by the caller (``by_reference``/``find(for_update=True)``) or just created."""
    if received_minor <= 0:
        raise ValidationFailed("a received amount is positive", code="invalid_amount")
    if topup.status == CONFIRMED:
        return Applied(topup, DUPLICATE)
    if topup.status == FAILED:
        raise Conflict(
            "this top-up has failed: a confirmation after the failure is refused",
            code="topup_already_failed",
            topup_id=topup.id,
        )
    guard: limits.LimitGuard | None = None
    lock_s: int | None = None
    if settings is not None:
        user = session.get_one(User, topup.user_id)
        money = settings.asset_registry().get(topup.asset)
        check_topup_limits(
            session=session, user=user, amount=Money(received_minor, money), settings=settings
        )
        # checked again under the user's lock where the credit is applied; a crypto asset
        # bought through this fiat channel is locked for N hours (R-TN-1)
        guard = limits.guard(user=user, operation=Operation.TOPUP, settings=settings)
        lock_s = limits.hold_seconds(user=user, asset=topup.asset, settings=settings)
    now = now or utcnow()
    purchase = purchase_credit.of_topup(session=session, topup_id=topup.id)
    bought = purchase is not None and purchase_credit.buy(
        session=session,
        purchase=purchase,
        received_minor=received_minor,
        now=now,
        settings=settings,
    )
    transfer_id = None
    if not bought:
        transfer_id = _credit(session, topup, received_minor, guard, lock_s, now)
    topup.status = CONFIRMED
    topup.received_minor = received_minor
    topup.transfer_id = transfer_id
    topup.failure_reason = None
    topup.updated_at = now
    session.flush()
    notices.confirmed(session=session, topup=topup, purchase=purchase, now=now, settings=settings)
    return Applied(topup, CREDITED)


def _credit(
    session: Session,
    topup: Topup,
    received_minor: int,
    guard: limits.LimitGuard | None,
    lock_s: int | None,
    now: datetime,
) -> str:
    """The plain credit: ``topup:<id>`` from the bank omnibus account to the user's wallet."""
    wallet = ledger.user_wallet_id(session=session, user_id=topup.user_id, asset=topup.asset)
    omnibus = ledger.ensure_account_id(
        session=session,
        owner_type=ledger.OPERATOR,
        owner_id=ledger.OPERATOR,
        kind=OMNIBUS,
        asset=topup.asset,
        allow_negative=True,
    )
    return ledger.transfer(
        session=session,
        spec=TransferSpec(
            id=transfer_id_of(topup.id),
            debit_account_id=omnibus,
            credit_account_id=wallet,
            asset=topup.asset,
            amount_minor=received_minor,
            code=TRANSFER_CODE,
            note=f"{topup.channel} top-up",
            guard=guard,
            lock_s=lock_s,
        ),
        now=now,
    )


def fail(*, session: Session, topup: Topup, reason: str, now: datetime | None = None) -> Applied:
    """A connector's failure: nothing moves. After a confirmation it is ignored (recorded by the
    caller); twice is a duplicate."""
    if topup.status == CONFIRMED:
        return Applied(topup, IGNORED)
    if topup.status == FAILED:
        return Applied(topup, DUPLICATE)
    now = now or utcnow()
    topup.status = FAILED
    topup.failure_reason = reason[:64]
    topup.updated_at = now
    session.flush()
    purchase = purchase_credit.of_topup(session=session, topup_id=topup.id)
    if purchase is not None:
        notices.purchase_failed(session=session, purchase=purchase, now=now)
    return Applied(topup, MARKED_FAILED)


def confirm_at_store(
    *,
    session: Session,
    topup: Topup,
    received_minor: int,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> Applied:
    """The store terminal took ``received_minor`` in cash for the barcode of ``topup`` (locked,
    ``by_reference``): credited once; an expired barcode is refused, since the cash is still at
    the counter (410 ``topup_expired``)."""
    now = now or utcnow()
    record = topup
    if record.status == CONFIRMED:
        return Applied(record, DUPLICATE)
    if record.status == EXPIRED or (record.status == REQUESTED and aware(record.expires_at) <= now):
        raise TopupExpired(
            "this barcode has expired: ask the customer for a new one",
            topup_id=record.id,
            expired_at=aware(record.expires_at).isoformat(),
        )
    return confirm(
        session=session, topup=record, received_minor=received_minor, now=now, settings=settings
    )


class TopupExpired(DomainError):
    code = "topup_expired"
    status = 410


def aware(moment: datetime) -> datetime:  # SQLite gives naive UTC
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


def expire(*, session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """Mark requested top-ups past their validity ``expired``, at most ``limit`` a run; on
    PostgreSQL the rows are taken ``FOR UPDATE SKIP LOCKED``, so several workers share the work
    and a notification that holds a row is never waited for."""
    now = now or utcnow()
    query = (
        select(Topup)
        .where(Topup.status == REQUESTED, Topup.expires_at <= now)
        .order_by(Topup.expires_at)
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query))
    for row in rows:
        row.status = EXPIRED
        row.updated_at = now
    session.flush()
    return len(rows)


def poll_sandbox(*, session: Session, now: datetime | None = None, limit: int = 500) -> int:
    """The sandbox's timed-out top-ups are confirmed on the next poll (the worker's sweep):
    how many were credited."""
    now = now or utcnow()
    query = (
        select(Topup)
        .where(Topup.status == REQUESTED, Topup.channel == connectors.SANDBOX)
        .order_by(Topup.created_at)
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    credited = 0
    for row in list(session.scalars(query)):
        if (
            confirm(session=session, topup=row, received_minor=row.amount_minor, now=now).outcome
            == CREDITED
        ):
            credited += 1
    return credited
