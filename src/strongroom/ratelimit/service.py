"""Counting requests against the rules of ``settings.rate_limits`` (R-SEC-9).

**Store.** The database, so that the counts hold across ``strongroom serve --workers N`` and
several hosts (PostgreSQL in production, SQLite on the single box): PyPI's ``limits`` has memory,
Redis, Memcached, MongoDB and etcd storage but nothing SQL, and a Redis only for this would be
one more service to run and secure. One row per rule and key (``RateLimitBucket``).

**Window.** Fixed, anchored at the key's first request: a check is one upsert that either
starts a new window (count 1, ending ``window_s`` from now) or adds one to the current window's
count, and returns the count and the window's end. So a key gets at most ``limit`` requests per
window, the refusal says exactly when the window ends (``Retry-After``), and there is no burst of
twice the limit at a clock boundary as with windows aligned to the clock. A sliding log would
need a row per request; a sliding average one read more per check, for little gain here.

**Transaction.** ``RateLimiter.hit`` runs before the request's work. Where the request's
session has not begun (anonymous sign-in, sign-up, reset: every check that guards Argon2), the
count is its own short unit of work, committed before the work starts: it survives whatever the
request does next (a refusal, an error, a crash), a refused request has written nothing else,
and the bucket's row lock is held for one statement, not across an Argon2 hash. Where the
request has read already (a signed-in user's 2FA step), the count is a kept record of the
request's unit of work (``db.keep``): on SQLite, whose one writer holds the database from
``BEGIN IMMEDIATE``, a second transaction would wait for the request's own.

**Giving back.** A sign-in or 2FA step that succeeds gives its count back (``give_back``), so
those rules count wrong guesses (and attempts still running), and honest people behind one
address (an office, a mobile carrier) do not use up each other's limit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, case, delete, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import insert_for, keep, unit_of_work, utcnow
from strongroom.errors import DomainError, invariant
from strongroom.ratelimit.models import RateLimitBucket
from strongroom.settings import RateLimitRule, RateLimitSettings

CHECKS_MAX = 8
"""The most rules one request is counted against (P5: bounded)."""
SWEEP_BATCH_MAX = 10_000
TABLE = cast(Table, RateLimitBucket.__table__)


class RateLimited(DomainError):
    """429 ``rate_limited``: ``details`` {rule, retry_after_s, retry_at (ISO 8601, UTC)}; the
    ``Retry-After`` header."""

    code = "rate_limited"
    status = 429

    def __init__(self, rule: str, retry_after_s: int, retry_at: datetime) -> None:
        super().__init__(
            f"too many requests ({rule}): try again in {retry_after_s} s",
            rule=rule,
            retry_after_s=retry_after_s,
            retry_at=retry_at.isoformat(),
        )

    @property
    def retry_after_s(self) -> int:
        seconds: int = self.details["retry_after_s"]
        return seconds

    @property
    def headers(self) -> dict[str, str]:
        """What the answer carries besides the body (``app.py`` adds them)."""
        return {"Retry-After": str(self.retry_after_s)}


@dataclass(frozen=True, slots=True)
class Check:
    """Count this request against ``rule`` (a ``RateLimitSettings`` field) for ``key``."""

    rule: str
    key: str


@dataclass(frozen=True, slots=True)
class Counted:
    """A count this request added: where, and in which window (to give it back)."""

    rule: str
    key_digest: str
    window_end_ms: int


@dataclass(frozen=True, slots=True)
class Verdict:
    counted: list[Counted]
    refused: RateLimited | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def epoch_ms(moment: datetime) -> int:
    invariant(moment.tzinfo is not None, "rate limit clocks are timezone-aware")
    return math.floor(moment.timestamp() * 1000)


def count(
    *, session: Session, checks: Sequence[Check], settings: RateLimitSettings, now: datetime
) -> Verdict:
    """Count one request against each check in order, stopping at the first that is over its
    limit (so a request refused for its address does not use up the account's limit)."""
    invariant(len(checks) <= CHECKS_MAX, "too many rate limit checks for one request")
    counted: list[Counted] = []
    now_ms = epoch_ms(now)
    for check in checks:
        rule = settings.rule(check.rule)
        hits, window_end_ms = _add_one(session, check.rule, digest(check.key), rule, now_ms)
        counted.append(Counted(check.rule, digest(check.key), window_end_ms))
        if hits > rule.limit:
            retry_after_s = max(1, math.ceil((window_end_ms - now_ms) / 1000))
            retry_at = datetime.fromtimestamp(window_end_ms / 1000, UTC)
            return Verdict(counted, RateLimited(check.rule, retry_after_s, retry_at))
    return Verdict(counted, None)


def _add_one(
    session: Session, rule_name: str, key_digest: str, rule: RateLimitRule, now_ms: int
) -> tuple[int, int]:
    """The upsert: a new window (1) or one more in the current one; (hits, window end)."""
    table = TABLE
    insert = insert_for(session)
    upsert = insert(table).values(
        rule=rule_name,
        key_digest=key_digest,
        window_end_ms=now_ms + rule.window_s * 1000,
        hits=1,
    )
    ended = table.c.window_end_ms <= now_ms
    statement = upsert.on_conflict_do_update(
        index_elements=[table.c.rule, table.c.key_digest],
        set_={
            "hits": case((ended, 1), else_=table.c.hits + 1),
            "window_end_ms": case(
                (ended, now_ms + rule.window_s * 1000), else_=table.c.window_end_ms
            ),
        },
    ).returning(table.c.hits, table.c.window_end_ms)
    row = session.execute(statement).one()
    return int(row.hits), int(row.window_end_ms)


def give_back(*, session: Session, counted: Sequence[Counted]) -> None:
    """Take back counts this request added, in the window they were added to (a window that
    ended since then is left alone)."""
    invariant(len(counted) <= CHECKS_MAX, "too many counts to give back")
    table = TABLE
    for one in counted:
        session.execute(
            update(table)
            .where(
                table.c.rule == one.rule,
                table.c.key_digest == one.key_digest,
                table.c.window_end_ms == one.window_end_ms,
                table.c.hits > 0,
            )
            .values(hits=table.c.hits - 1)
        )


def sweep(*, session: Session, now: datetime, limit: int) -> int:
    """Delete at most ``limit`` buckets whose window ended (oldest first); how many."""
    invariant(0 < limit <= SWEEP_BATCH_MAX, "rate limit sweep batch out of range")
    table = TABLE
    ended = (
        select(table.c.rule, table.c.key_digest)
        .where(table.c.window_end_ms <= epoch_ms(now))
        .order_by(table.c.window_end_ms)
        .limit(limit)
    )
    pairs = [(row.rule, row.key_digest) for row in session.execute(ended)]
    if not pairs:
        return 0
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(table).where(tuple_(table.c.rule, table.c.key_digest).in_(pairs))
    )
    return int(result.rowcount)


class RateLimiter:
    """The app's limiter (``app.state.rate_limiter``): counts in its own unit of work from
    ``factory``; ``clock`` can be replaced (tests move time instead of waiting)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: RateLimitSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.clock = clock

    def hit(self, checks: Sequence[Check], *, request_session: Session) -> list[Counted]:
        """Count this request; ``RateLimited`` when a rule is over its limit. Nothing is counted
        while the limits are off.

        Before the request's session has begun (an anonymous sign-in, sign-up or reset), the
        count is its own unit of work, committed at once. A request that has read already (a
        signed-in user's 2FA step) counts in its own unit of work as a kept record
        (``db.keep``): on SQLite a second writer would wait for the first."""
        if not self.settings.enabled or not checks:
            return []
        settings, now = self.settings, self.clock()

        def write(session: Session) -> list[Counted]:
            verdict = count(session=session, checks=checks, settings=settings, now=now)
            if verdict.refused is not None:
                raise verdict.refused
            return verdict.counted

        if request_session.in_transaction():
            return keep(request_session, write)
        with unit_of_work(self.factory) as session:
            verdict = count(session=session, checks=checks, settings=settings, now=now)
        if verdict.refused is not None:
            raise verdict.refused
        return verdict.counted

    def give_back(self, counted: Sequence[Counted], *, request_session: Session) -> None:
        """Take back what ``hit`` counted (a sign-in that succeeded): in the request's unit of
        work when it has begun (it commits with the success), else in one of its own."""
        if not counted:
            return
        if request_session.in_transaction():
            give_back(session=request_session, counted=counted)
            return
        with unit_of_work(self.factory) as session:
            give_back(session=session, counted=counted)
