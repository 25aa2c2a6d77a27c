"""Group commit for single transfers (R-LEDGER-6).

Request handlers prepare a ``TransferSpec`` in their own short transaction, then hand it to the
process's ``Batcher``. One thread takes what has queued up (at most ``max_batch``), and applies it
in ONE database transaction: the idempotency keys are claimed in one statement, the transfers go
through ``create_transfers`` (each its own group, so one refusal does not touch the others), the
stored responses are written in one statement, and one commit makes it all durable. Round trips,
the commit's flush and a hot account's row lock are paid once per batch instead of once per
request. Every caller still gets its own result or its own error, and nothing is acknowledged
before the commit.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work, utcnow
from strongroom.errors import Conflict, DomainError, invariant
from strongroom.idempotency import IdempotencyKey
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec

log = logging.getLogger("strongroom.batcher")

Response = tuple[int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Claim:
    scope: str
    key: str
    fingerprint: str


@dataclass(slots=True)
class Job:
    spec: TransferSpec
    claim: Claim | None
    respond: Callable[[str], Response]
    future: Future[Response] = field(default_factory=Future)
    attempts: int = 0


class Batcher:
    """Applies queued single transfers in batches on one thread."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        max_batch: int = 256,
        queue_max: int = 10_000,
        result_timeout_s: float = 30.0,
    ) -> None:
        invariant(1 <= max_batch <= 8000, "max_batch out of range")
        self.factory = factory
        self.max_batch = max_batch
        self.result_timeout_s = result_timeout_s
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_max)
        self._thread = threading.Thread(target=self._run, name="sr-batcher", daemon=True)
        self._thread.start()

    def submit(
        self, spec: TransferSpec, claim: Claim | None, respond: Callable[[str], Response]
    ) -> Response:
        """Queue one transfer and wait for its committed result (or its error)."""
        job = Job(spec=spec, claim=claim, respond=respond)
        try:
            self._queue.put(job, timeout=self.result_timeout_s)
        except queue.Full as error:
            raise DomainError("the ledger is busy; retry shortly", code="busy") from error
        return job.future.result(timeout=self.result_timeout_s)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._process(jobs)
                    return
                jobs.append(job)
            self._process(jobs)

    def _process(self, jobs: list[Job]) -> None:
        try:
            with unit_of_work(self.factory) as session:
                outcomes, duplicates = _apply(session, jobs)
        except Exception as error:  # a database error: isolate it job by job
            if len(jobs) == 1:
                log.exception("ledger batch of one failed")
                jobs[0].future.set_exception(error)
                return
            for job in jobs:
                self._process([job])
            return
        for job, outcome in outcomes:
            if isinstance(outcome, DomainError):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        for job in duplicates:
            self._replay(job)

    def _replay(self, job: Job) -> None:
        """A job whose key another request claimed: answer with what that one stored."""
        assert job.claim is not None
        try:
            with self.factory() as session:
                found = stored_response(session=session, claim=job.claim)
        except DomainError as error:
            job.future.set_exception(error)
            return
        if found is not None:
            job.future.set_result(found)
        elif job.attempts < 3:  # the owner was refused and kept nothing: run this one anew
            job.attempts += 1
            self._process([job])
        else:
            job.future.set_exception(
                Conflict(
                    "a request with this Idempotency-Key is still in progress",
                    code="idempotency_key_in_progress",
                )
            )


def stored_response(*, session: Session, claim: Claim) -> Response | None:
    """The stored result for a key, None if there is none; 409 if the request differed."""
    row = session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.scope == claim.scope, IdempotencyKey.key == claim.key
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.request_hash != claim.fingerprint:
        raise Conflict(
            "this Idempotency-Key was used with a different request", code="idempotency_key_reused"
        )
    if row.status_code is None or row.response_json is None:
        return None
    return row.status_code, json.loads(row.response_json)


def _apply(
    session: Session, jobs: list[Job]
) -> tuple[list[tuple[Job, Response | DomainError]], list[Job]]:
    owners, duplicates = _claim(session, jobs)
    results = ledger.create_transfers(session=session, specs=[job.spec for job in owners])
    outcomes: list[tuple[Job, Response | DomainError]] = []
    stored: list[dict[str, Any]] = []
    refused: list[Claim] = []
    for job, result in zip(owners, results, strict=True):
        if result.error is not None:
            outcomes.append((job, result.error))
            if job.claim is not None:
                refused.append(job.claim)  # a refusal moved nothing: a retry runs anew
            continue
        status, body = job.respond(result.id)
        outcomes.append((job, (status, body)))
        if job.claim is not None:
            stored.append(
                {
                    "b_scope": job.claim.scope,
                    "b_key": job.claim.key,
                    "status_code": status,
                    "response_json": json.dumps(body),
                }
            )
    _store(session, stored, refused)
    return outcomes, duplicates


def _claim(session: Session, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """Insert every job's key in one statement; a key already there (or twice in this batch)
    makes its job a duplicate."""
    claims = {(job.claim.scope, job.claim.key): job.claim for job in jobs if job.claim}
    won: set[tuple[str, str]] = set()
    if claims:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        now = utcnow()
        rows = [
            {"scope": c.scope, "key": c.key, "request_hash": c.fingerprint, "created_at": now}
            for c in claims.values()
        ]
        returned = session.execute(
            insert(IdempotencyKey)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.scope, IdempotencyKey.key)
        ).all()
        won = {(row.scope, row.key) for row in returned}
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


def _store(session: Session, stored: list[dict[str, Any]], refused: list[Claim]) -> None:
    table = cast(Table, IdempotencyKey.__table__)
    if stored:
        session.execute(
            update(table).where(
                and_(table.c.scope == bindparam("b_scope"), table.c.key == bindparam("b_key"))
            ),
            stored,
        )
    if refused:
        session.execute(
            delete(table).where(
                or_(
                    *(
                        and_(table.c.scope == claim.scope, table.c.key == claim.key)
                        for claim in refused
                    )
                )
            )
        )
