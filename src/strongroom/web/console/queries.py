"""The read-only questions of the console that no domain service answers: how many users, how
much money moved today, how many emails wait, which users match a search. Nothing here writes;
every query is bounded (a page size, a group per asset or per status).

Today's volume per asset is the money that moved today (UTC): the sum of the posted transfers
and of the pending transfers that were posted (``post_pending``), created since midnight UTC.
A pending transfer counts once, when it is posted; holds and voids move nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from strongroom.errors import invariant
from strongroom.identity.models import User
from strongroom.ledger.domain import TransferKind
from strongroom.ledger.models import Transfer
from strongroom.notify.models import FAILED, PENDING, OutboxEmail

MOVED: Final = (TransferKind.POSTED.value, TransferKind.POST_PENDING.value)
SEARCH_MAX_CHARS: Final = 254


@dataclass(frozen=True, slots=True)
class UserCounts:
    users: int
    operators: int


def user_counts(*, session: Session) -> UserCounts:
    """Accounts without an operator role, and operators."""
    rows = session.execute(
        select(User.operator_role.is_(None), func.count()).group_by(User.operator_role.is_(None))
    ).all()
    counts = {bool(plain): int(count) for plain, count in rows}
    return UserCounts(users=counts.get(True, 0), operators=counts.get(False, 0))


def start_of_day_utc(now: datetime) -> datetime:
    invariant(now.tzinfo is not None, "an aware time")
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


def volume_today(*, session: Session, now: datetime) -> dict[str, int]:
    """Asset code → the minor units moved today (UTC), for the assets that moved."""
    rows = session.execute(
        select(Transfer.asset, func.sum(Transfer.amount_minor))
        .where(Transfer.created_at >= start_of_day_utc(now), Transfer.kind.in_(MOVED))
        .group_by(Transfer.asset)
        .order_by(Transfer.asset)
    ).all()
    return {str(asset): int(total or 0) for asset, total in rows}


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    failed: int


def outbox_backlog(*, session: Session) -> Backlog:
    """Emails waiting to be delivered (or retried), and emails given up on."""
    rows = session.execute(
        select(OutboxEmail.status, func.count())
        .where(OutboxEmail.status.in_((PENDING, FAILED)))
        .group_by(OutboxEmail.status)
    ).all()
    counts = {str(status): int(count) for status, count in rows}
    return Backlog(pending=counts.get(PENDING, 0), failed=counts.get(FAILED, 0))


@dataclass(frozen=True, slots=True)
class UsersPage:
    items: list[User]
    next_after: str | None
    """The last email of this page: the next page starts after it (None: no more)."""


def search_users(*, session: Session, text: str, limit: int, after: str | None = None) -> UsersPage:
    """Users whose email contains ``text`` (so also those it starts), or whose id is ``text``;
    every user when ``text`` is empty. By email, ``limit`` a page."""
    invariant(1 <= limit <= 500, "page size out of bounds")
    needle = text.strip().lower()[:SEARCH_MAX_CHARS]
    query = select(User).order_by(User.email).limit(limit + 1)
    if needle:
        query = query.where(
            or_(User.email.contains(needle, autoescape=True), User.id == text.strip())
        )
    if after:
        query = query.where(User.email > after)
    rows = list(session.scalars(query))
    items = rows[:limit]
    return UsersPage(items=items, next_after=items[-1].email if len(rows) > limit else None)
