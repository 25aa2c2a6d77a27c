"""Group commit for single transfers (R-LEDGER-6).

The money-movement service prepares a ``TransferSpec`` in the request's own transaction, then
hands it to the process's ``Batcher``. One thread takes what has queued up (at most
``max_batch``) and applies it in ONE database transaction: the idempotency keys are claimed in
one statement together with the outcome each will have (the transfer ids are chosen before), the
transfers go through ``ledger.create_transfers`` (each its own group, so one refusal does not
touch the others), the keys of refused transfers are deleted in one statement, and one commit
makes it all durable. Round trips, the commit's flush and a hot account's row lock are paid once
per batch instead of once per request. Every caller still gets its own outcome or its own error,
and nothing is acknowledged before the commit.

A job may also carry a LINKED group (a merchant charge: the payment and its fee leg, and the FX
legs when cross-border: all or none, R-LEDGER-2), the outcome to answer instead of the first
transfer's (the charge's id) and a ``Once`` row: a row only one job may ever write (a payment
code's use). The batch's ``Once`` rows of a table are inserted in ONE ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` before the money moves, so a second use of a code refuses that job only
(not the batch), and a job refused afterwards deletes its row again (the code is given back).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, tuple_
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import insert_for, unit_of_work, utcnow
from strongroom.errors import Conflict, DomainError, invariant, present
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.movements import idempotency, lane
from strongroom.movements.idempotency import Claim, Outcome
from strongroom.notify import outbox
from strongroom.payments import receipts
from strongroom.settings import Settings

log = logging.getLogger("strongroom.batcher")

REPLAY_ATTEMPTS_MAX = 3


OnCommit = Callable[[Session, str], None]
"""Written in the transaction that moves the money, once it went through (the transfer's id):
e.g. the receipt emails of a P2P transfer (R-P2P-1). Only adds rows (no flush, no query): the
batch's one flush writes them; a refused transfer never calls it."""


@dataclass(frozen=True, slots=True)
class Once:
    """A row at most one job ever writes (a payment code's use: its primary key is the code):
    ``values`` of ``table``, whose primary key decides. The job whose row is there already (or
    was taken by an earlier job of the same batch) is refused with ``refusal``."""

    table: Table
    values: Mapping[str, Any]
    refusal: DomainError

    @property
    def key(self) -> tuple[Any, ...]:
        return tuple(self.values[column.name] for column in self.table.primary_key.columns)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a money-moving request hands the batcher: the transfer and what it writes with it.

    ``linked``: transfers that succeed or fail together with ``spec`` (their ``linked`` flags
    are set by the batcher: all but the last of the group); ``outcome``: what the request
    answers (default: ``spec``'s id and status); ``once``: see ``Once``. ``on_commit`` gets
    ``spec``'s transfer id."""

    spec: TransferSpec
    on_commit: OnCommit | None = None
    linked: tuple[TransferSpec, ...] = ()
    outcome: Outcome | None = None
    once: Once | None = None


class HandedBack(Exception):
    """A fast-lane request that moved nothing and is not the lane's to answer: not plain
    (``lane.resolve``), refused, or its key already claimed. The lane passes it to the route."""


@dataclass(slots=True)
class Job:
    spec: TransferSpec | None
    claim: Claim | None
    future: Future[Outcome] = field(default_factory=Future)
    attempts: int = 0
    on_commit: OnCommit | None = None
    linked: tuple[TransferSpec, ...] = ()
    outcome: Outcome | None = None
    once: Once | None = None
    lane: lane.LaneRequest | None = None
    """A fast-lane request: ``spec``, ``claim`` and ``on_commit`` are made in the batch."""
    settings: Settings | None = None
    waiting: asyncio.Future[Outcome] | None = None
    """A fast-lane request's future on its event loop: ``future``'s result, passed on."""

    def __post_init__(self) -> None:
        if self.claim is not None and self.spec is not None and self.spec.id is None:
            # stored with its key; a fresh UUID, so the ledger does not look it up
            self.spec = replace(self.spec, id=str(uuid.uuid4()), new_id=True)
        invariant(
            not self.linked
            or all(s is not None and s.id is not None for s in (self.spec, *self.linked)),
            "a linked group names its transfers",
        )

    @property
    def specs(self) -> list[TransferSpec]:
        """The job's transfers for ``ledger.create_transfers``: one group, linked in order."""
        spec = present(self.spec, "a job has its transfer once resolved")
        if not self.linked and not spec.linked:
            return [spec]
        group = (spec, *self.linked)
        last = len(group) - 1
        return [replace(s, linked=i < last) for i, s in enumerate(group)]


class Batcher:
    """Applies queued single transfers in batches on ``threads`` threads.

    One thread at a time gathers a batch: it holds the baton (``_Baton``) while it takes what
    has queued up and does the batch's work that needs no account lock (the lane's read, the
    claim, the receipts), and passes it on as the batch goes to lock its accounts. So with two
    threads one batch gathers while the other holds its locks and commits (a two-stage
    pipeline), and the next batch holds everything that arrived meanwhile: two eager threads
    made batches half as large, and a batch's fixed cost is most of a small batch's (issue
    #14)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        max_batch: int = 256,
        queue_max: int = 10_000,
        result_timeout_s: float = 30.0,
        threads: int = 1,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """``on_close``: called once the threads ended (``close``): e.g. to close the batcher's
        own connections."""
        invariant(1 <= max_batch <= 8000, "max_batch out of range")
        invariant(threads >= 1, "at least one batching thread")
        self.factory = factory
        self.max_batch = max_batch
        self.result_timeout_s = result_timeout_s
        self._on_close = on_close
        self._gathering = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_max)
        self._threads = [
            threading.Thread(target=self._run, name=f"sr-batcher-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, spec: TransferSpec, claim: Claim | None, on_commit: OnCommit | None = None
    ) -> Outcome:
        """Queue one transfer and wait for its committed outcome (or its error)."""
        return self.submit_prepared(Prepared(spec=spec, on_commit=on_commit), claim)

    def submit_prepared(self, prepared: Prepared, claim: Claim | None) -> Outcome:
        """Queue a prepared job (a linked group, its outcome, its ``Once`` row) and wait for
        its committed outcome (or its error)."""
        job = Job(
            spec=prepared.spec,
            claim=claim,
            on_commit=prepared.on_commit,
            linked=prepared.linked,
            outcome=prepared.outcome,
            once=prepared.once,
        )
        try:
            self._queue.put(job, timeout=self.result_timeout_s)
        except queue.Full as error:
            raise DomainError("the ledger is busy; retry shortly", code="busy") from error
        return job.future.result(timeout=self.result_timeout_s)

    def submit_lane(
        self, request: lane.LaneRequest, settings: Settings, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[Outcome]:
        """Queue a fast-lane request without waiting (the caller is ``loop``, the event loop):
        its future holds the committed outcome, or ``HandedBack`` or another error when it
        moved nothing the lane may answer for. A full queue hands it back at once. The lane
        futures of a batch are completed together, with one wake-up of their loop."""
        waiting: asyncio.Future[Outcome] = loop.create_future()
        job = Job(spec=None, claim=None, lane=request, settings=settings, waiting=waiting)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            waiting.set_exception(HandedBack())
        return waiting

    @property
    def closed(self) -> bool:
        """Whether ``close`` ended the batching threads (a new ``Batcher`` is needed then)."""
        return not any(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        if self._on_close is not None:
            self._on_close()

    def _run(self) -> None:
        while True:
            baton = _Baton(self._gathering)
            try:
                jobs, last = self._take()
                if jobs:
                    self._process(jobs, baton.release)
            finally:
                baton.release()
            _wake(jobs)
            if last:
                return

    def _take(self) -> tuple[list[Job], bool]:
        """What has queued up (waiting for the first job), at most ``max_batch``; and whether
        ``close`` asked this thread to stop."""
        first = self._queue.get()
        if first is None:
            return [], True
        jobs = [first]
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _process(self, jobs: list[Job], locking: Callable[[], None] = lambda: None) -> None:
        """Apply ``jobs`` in one transaction; ``locking`` is called before the ledger locks
        their accounts (it passes the batching threads' baton on: see ``Batcher``)."""
        try:
            with unit_of_work(self.factory) as session:
                outcomes, duplicates = _apply(session, jobs, locking)
        except Exception as error:  # a database error: isolate it job by job
            if len(jobs) == 1:
                log.exception("ledger batch of one failed")
                jobs[0].future.set_exception(error)
                return
            for job in jobs:
                self._process([job], locking)
            return
        for job, outcome in outcomes:
            if isinstance(outcome, Exception):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        for job in duplicates:
            self._replay(job)

    def _replay(self, job: Job) -> None:
        """A job whose key another request claimed: answer with what that one stored."""
        claim = present(job.claim, "only a job with a key can be a duplicate")
        if job.lane is not None:  # the route answers a replay, or runs it anew
            job.future.set_exception(HandedBack())
            return
        try:
            with self.factory() as session:
                found = idempotency.stored_outcome(session=session, claim=claim)
        except DomainError as error:
            job.future.set_exception(error)
            return
        if found is not None:
            job.future.set_result(found)
        elif job.attempts < REPLAY_ATTEMPTS_MAX:  # the owner was refused: run this one anew
            job.attempts += 1
            self._process([job])
        else:
            job.future.set_exception(
                Conflict(
                    "a request with this Idempotency-Key is still in progress",
                    code="idempotency_key_in_progress",
                )
            )


def _wake(jobs: list[Job]) -> None:
    """Pass the batch's fast-lane results to their event loops: one ``call_soon_threadsafe``
    per loop (one wake-up), not one per request."""
    loops: dict[asyncio.AbstractEventLoop, list[Job]] = {}
    for job in jobs:
        if job.waiting is not None:
            loops.setdefault(job.waiting.get_loop(), []).append(job)
    for loop, waiting in loops.items():
        try:
            loop.call_soon_threadsafe(_deliver, waiting)
        except RuntimeError:  # the loop is closed: nobody waits any more
            continue


def _deliver(jobs: list[Job]) -> None:
    """On the event loop: each job's result into its ``waiting`` future (a request that
    stopped waiting, e.g. timed out, is skipped)."""
    for job in jobs:
        waiting = present(job.waiting, "only lane jobs are delivered")
        if waiting.done():
            continue
        if not job.future.done():  # not decided here: the route answers it
            waiting.set_exception(HandedBack())
        elif (error := job.future.exception()) is not None:
            waiting.set_exception(error)
        else:
            waiting.set_result(job.future.result())


def status_of(spec: TransferSpec) -> str:
    """The status a committed transfer answers with: a pending one is ``pending``."""
    return "pending" if spec.kind == TransferKind.PENDING else "completed"


class _Baton:
    """The batching threads' turn to gather a batch: taken when made, given back once (at the
    latest when the batch is done)."""

    def __init__(self, lock: threading.Lock) -> None:
        lock.acquire()
        self._lock: threading.Lock | None = lock

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()


def _apply(
    session: Session, jobs: list[Job], locking: Callable[[], None]
) -> tuple[list[tuple[Job, Outcome | Exception]], list[Job]]:
    jobs, handed_back = _resolve_lane(session, jobs)
    owners, duplicates = _claim(session, jobs)
    outcomes: list[tuple[Job, Outcome | Exception]] = [(job, HandedBack()) for job in handed_back]
    refused: list[Claim] = []
    owners, taken = _claim_once(session, owners)
    for job in taken:
        outcomes.append((job, present(job.once, "a taken job has a once row").refusal))
        if job.claim is not None:
            refused.append(job.claim)
    specs = [spec for job in owners for spec in job.specs]
    now = utcnow()
    early = _receipts_early(session, owners, now)
    locking()
    results = iter(ledger.create_transfers(session=session, specs=specs, now=now))
    given_back: list[Once] = []
    emails: list[dict[str, object]] = []
    taken_back: list[int] = []
    for job in owners:
        own = [next(results) for _ in range(len(job.linked) + 1)]
        errors = [r.error for r in own if r.error is not None]
        if errors:
            first = [e for e in errors if e.code != "linked_transfer_failed"] or errors
            outcomes.append((job, first[0] if job.lane is None else HandedBack()))
            if job.claim is not None:
                refused.append(job.claim)
            if job.once is not None:
                given_back.append(job.once)
            taken_back.extend(early.get(id(job), ()))
            continue
        spec = present(job.spec, "resolved")
        outcome = job.outcome or Outcome(id=own[0].id, status=status_of(spec))
        if id(job) in early:
            invariant(own[0].id == spec.id, "receipts written early name the transfer made")
        elif isinstance(job.on_commit, receipts.Receipts):
            emails.extend(job.on_commit.rows(own[0].id, now))
        elif job.on_commit is not None:
            job.on_commit(session, own[0].id)
        if job.claim is not None:
            invariant(outcome == _outcome_of(job), "the stored outcome is the one made")
        outcomes.append((job, outcome))
    invariant(next(results, None) is None, "one result per transfer")
    outbox.insert_rows(session, emails)  # every receipt of the batch in one statement
    outbox.delete_rows(session, taken_back)  # receipts of refused transfers: never sent
    _give_back(session, given_back)
    idempotency.settle(session=session, done=[], refused=refused)
    return outcomes, duplicates


def _receipts_early(session: Session, jobs: list[Job], now: datetime) -> dict[int, list[int]]:
    """On PostgreSQL, the receipts of jobs whose transfer id is known, written BEFORE the
    ledger locks the accounts (they depend on no balance): the locks are then held for one
    round trip less. A refused job's receipts are deleted again in the same transaction, so
    none is ever sent. By ``id(job)``: the outbox ids of its receipts."""
    if session.get_bind().dialect.name != "postgresql":
        return {}
    ready: list[tuple[Job, receipts.Receipts, str]] = [
        (job, job.on_commit, job.spec.id)
        for job in jobs
        if isinstance(job.on_commit, receipts.Receipts)
        and job.spec is not None
        and job.spec.id is not None
    ]
    made = [writer.rows(transfer_id, now) for _, writer, transfer_id in ready]
    ids = iter(outbox.insert_rows_returning_ids(session, [row for rows in made for row in rows]))
    return {
        id(job): [next(ids) for _ in rows] for (job, _, _), rows in zip(ready, made, strict=True)
    }


def _claim_once(session: Session, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """Insert the jobs' ``Once`` rows, one statement per table; (the jobs that go on, the jobs
    whose row was taken: by a committed job, or an earlier one of this batch)."""
    tables: dict[str, list[Job]] = {}
    for job in jobs:
        if job.once is not None:
            tables.setdefault(job.once.table.name, []).append(job)
    taken: list[Job] = []
    for of_table in tables.values():
        table = present(of_table[0].once, "grouped by its once row").table
        keys = tuple(table.primary_key.columns)
        # in key order: two batches inserting the same rows wait for each other, never deadlock
        ordered = sorted(of_table, key=lambda job: present(job.once, "grouped").key)
        rows = [dict(present(job.once, "grouped").values) for job in ordered]
        won = {
            tuple(row)
            for row in session.execute(
                insert_for(session)(table).values(rows).on_conflict_do_nothing().returning(*keys)
            )
        }
        for job in of_table:
            key = present(job.once, "grouped").key
            if key in won:
                won.discard(key)  # a second job with the same row in this batch is refused
            else:
                taken.append(job)
    lost = {id(job) for job in taken}
    return [job for job in jobs if id(job) not in lost], taken


def _give_back(session: Session, rows: list[Once]) -> None:
    """Delete the ``Once`` rows of jobs the ledger refused: nothing moved, so a retry may use
    them (a refused charge gives its payment code back)."""
    for once in rows:
        keys = tuple(once.table.primary_key.columns)
        session.execute(delete(once.table).where(tuple_(*keys) == once.key))


def _resolve_lane(session: Session, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """Make the fast-lane jobs' transfers, keys and receipts in this transaction (every time
    the job runs: a batch retried job by job reads anew); (the jobs to apply, those handed
    back to the route)."""
    waiting = [job for job in jobs if job.lane is not None]
    if not waiting:
        return jobs, []
    settings = present(waiting[0].settings, "a lane job carries the app's settings")
    made = lane.resolve(
        session=session,
        requests=[present(job.lane, "lane job") for job in waiting],
        settings=settings,
        now=utcnow(),
    )
    handed_back = []
    for job, resolved in zip(waiting, made, strict=True):
        if resolved is None:
            handed_back.append(job)
            continue
        job.spec, job.claim, job.on_commit = resolved.spec, resolved.claim, resolved.on_commit
    back = {id(job) for job in handed_back}
    kept = [job for job in jobs if id(job) not in back]
    return kept, handed_back


def _outcome_of(job: Job) -> Outcome:
    """The outcome a job answers, chosen before it is applied (stored with its key)."""
    if job.outcome is not None:
        return job.outcome
    spec = present(job.spec, "a job has its transfer once resolved")
    return Outcome(
        id=present(spec.id, "a job with a key has its transfer id"), status=status_of(spec)
    )


def _keyed(jobs: list[Job]) -> list[Job]:
    return [job for job in jobs if job.claim is not None]


def _claim_order(job: Job) -> tuple[str, str]:
    claim = present(job.claim, "only jobs with a key are claimed")
    return claim.scope, claim.key


def _claim(session: Session, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """Claim every job's key in one statement, stored with the outcome its transfer will have
    (a refused one's key is deleted again before the commit); a key already there (or twice in
    this batch) makes its job a duplicate."""
    # claimed in key order: two batches in flight claiming the same keys wait, never deadlock
    keyed = {_claim_order(job): job for job in sorted(_keyed(jobs), key=_claim_order)}
    claims = {pair: present(job.claim, "keyed") for pair, job in keyed.items()}
    won = idempotency.claim_all(
        session=session,
        claims=list(claims.values()),
        outcomes=[_outcome_of(job) for job in keyed.values()],
    )
    owners, duplicates = [], []
    for job in jobs:
        if job.claim is None:
            owners.append(job)
            continue
        pair = (job.claim.scope, job.claim.key)
        if pair in won and claims[pair] is job.claim:
            owners.append(job)
            won.discard(pair)  # a second job with the same key in this batch is a duplicate
        else:
            duplicates.append(job)
    return owners, duplicates
