"""Background work: void pending transfers whose timeout passed (R-LEDGER-3), delete
idempotency keys older than their retention (SPEC P3, ``idempotency.retention_hours``), rate
limit buckets whose window ended (R-SEC-9, ``rate_limits.sweep_batch_max`` a sweep), expire
requested top-ups past their validity and poll the sandbox's timed-out top-ups (R-FUND-1,
``funding.expire_batch_max`` a sweep, rows taken ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and
send and poll withdrawal payouts (R-FUND-2, ``withdrawals.service.process_payouts``: the attempt
recorded before the connector is called; ``funding.expire_batch_max`` a sweep), and deliver the
merchant webhook outbox (R-MERCH-4, ``merchants.webhook_batch_max`` events a sweep, ``FOR UPDATE
SKIP LOCKED``, retried with backoff until a 2xx).

Runs inside ``strongroom serve`` (a thread per process) and as ``strongroom worker``. Several
workers at once are safe: each void locks the accounts, and a second void is refused; deleting
a key twice deletes it once; gifts are taken ``FOR UPDATE SKIP LOCKED`` and an expired gift
is not open any more. Each step is its own unit of work and bounded per run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work, utcnow
from strongroom.funding import topups
from strongroom.gifts import service as gifts
from strongroom.ledger import service as ledger
from strongroom.merchants import webhooks
from strongroom.movements import idempotency
from strongroom.ratelimit import service as ratelimit
from strongroom.settings import (
    FundingSettings,
    GiftSettings,
    IdempotencySettings,
    RateLimitSettings,
    Settings,
)
from strongroom.withdrawals import service as withdrawals

log = logging.getLogger("strongroom.worker")


@dataclass(frozen=True, slots=True)
class Swept:
    voided: int
    keys_expired: int
    buckets_swept: int = 0
    topups_expired: int = 0
    topups_polled: int = 0
    gifts_expired: int = 0
    payouts_paid: int = 0
    payouts_failed: int = 0
    webhooks_delivered: int = 0


def sweep_once(
    factory: sessionmaker[Session],
    keys: IdempotencySettings,
    limits: RateLimitSettings | None = None,
    funding: FundingSettings | None = None,
    gift_settings: GiftSettings | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> Swept:
    """One pass of every job. ``settings`` (the whole of them) turns on the jobs that need
    more than their own section: the withdrawals' payouts, the merchants' webhooks."""
    with unit_of_work(factory) as session:
        voided = ledger.expire_pending(session=session)
    with unit_of_work(factory) as session:
        expired = idempotency.expire(
            session=session, retention_hours=keys.retention_hours, limit=keys.expire_batch_max
        )
    swept = 0
    if limits is not None:
        with unit_of_work(factory) as session:
            swept = ratelimit.sweep(session=session, now=utcnow(), limit=limits.sweep_batch_max)
    gifts_expired = 0
    if gift_settings is not None:
        with unit_of_work(factory) as session:
            gifts_expired = gifts.expire_due(
                session=session, now=now or utcnow(), limit=gift_settings.expire_batch_max
            )
    polled = topups_expired = 0
    if funding is not None:
        with unit_of_work(factory) as session:
            polled = topups.poll_sandbox(session=session, limit=funding.expire_batch_max)
        with unit_of_work(factory) as session:
            topups_expired = topups.expire(session=session, limit=funding.expire_batch_max)
    payouts = withdrawals.Processed()
    delivered = 0
    if settings is not None:
        payouts = withdrawals.process_payouts(
            factory, settings, limit=settings.funding.expire_batch_max
        )
        with unit_of_work(factory) as session:
            delivered = webhooks.deliver_due(
                session=session, settings=settings.merchants, secret_key=settings.secret_key
            )
    return Swept(
        voided=voided,
        keys_expired=expired,
        buckets_swept=swept,
        topups_expired=topups_expired,
        topups_polled=polled,
        gifts_expired=gifts_expired,
        payouts_paid=payouts.paid,
        payouts_failed=payouts.failed,
        webhooks_delivered=delivered,
    )


def run(
    factory: sessionmaker[Session],
    stop: threading.Event,
    keys: IdempotencySettings,
    interval_s: float = 1.0,
    limits: RateLimitSettings | None = None,
    funding: FundingSettings | None = None,
    gift_settings: GiftSettings | None = None,
    settings: Settings | None = None,
) -> None:
    while not stop.is_set():
        try:
            swept = sweep_once(factory, keys, limits, funding, gift_settings, settings=settings)
            if swept.voided:
                log.info("voided %d expired pending transfers", swept.voided)
            if swept.keys_expired:
                log.info("deleted %d expired idempotency keys", swept.keys_expired)
            if swept.gifts_expired:
                log.info("expired %d gifts (the rest back to their senders)", swept.gifts_expired)
        except Exception:
            log.exception("sweep failed; retrying in %.1f s", interval_s)
        stop.wait(interval_s)


def start_thread(
    factory: sessionmaker[Session],
    keys: IdempotencySettings,
    interval_s: float = 1.0,
    limits: RateLimitSettings | None = None,
    funding: FundingSettings | None = None,
    gift_settings: GiftSettings | None = None,
    settings: Settings | None = None,
) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(
        target=run,
        args=(factory, stop, keys, interval_s, limits, funding, gift_settings, settings),
        name="sr-sweeper",
        daemon=True,
    )
    thread.start()
    return stop
