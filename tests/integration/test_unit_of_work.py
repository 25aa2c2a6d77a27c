"""The unit of work itself (``db.finish``, ``db.keep``, ``db.settle_refusal``), on PostgreSQL and
SQLite: a success commits everything; a refusal (a ``DomainError``) keeps only what kept writers
wrote, each written once, by a re-run that decides afresh from committed state; a re-run's own
refusal replaces the original and stops the writers after it; anything else rolls back
everything, kept writes too. Rows of the login throttle table serve as plain records here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.errors import Conflict, DomainError, Forbidden, Unauthorized
from strongroom.identity.models import LoginThrottle

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def add(session: Session, name: str) -> None:
    session.add(LoginThrottle(email=name, failures=0, locks=0, updated_at=T0))
    session.flush()


def kept(name: str) -> Callable[[Session], None]:
    return lambda session: add(session, name)


def names(factory: sessionmaker[Session]) -> set[str]:
    with factory() as session:
        return set(session.scalars(select(LoginThrottle.email)))


def test_a_success_commits_everything(factory):
    with db.unit_of_work(factory) as session:
        add(session, "plain")
        db.keep(session, kept("kept"))
    assert names(factory) == {"plain", "kept"}


def test_a_refusal_keeps_only_the_kept_writes(factory):
    refusal = Conflict("refused", code="refused")
    with pytest.raises(Conflict) as raised, db.unit_of_work(factory) as session:
        add(session, "before")
        db.keep(session, kept("kept-1"))
        add(session, "between")
        db.keep(session, kept("kept-2"))
        add(session, "after")
        raise refusal
    assert raised.value is refusal
    assert names(factory) == {"kept-1", "kept-2"}


def test_a_kept_writer_decides_again_from_committed_state(factory):
    def count_then_write(session: Session) -> int:
        seen = session.scalar(select(func.count()).select_from(LoginThrottle)) or 0
        add(session, f"saw-{seen}")
        return seen

    with pytest.raises(Conflict), db.unit_of_work(factory) as session:
        add(session, "refused-write")
        assert db.keep(session, count_then_write) == 1  # the first run sees the refused write
        raise Conflict("refused")
    assert names(factory) == {"saw-0"}  # the re-run did not, and wrote once


def test_a_writer_that_refuses_is_kept_and_its_refusal_reported(factory):
    def count_and_refuse(session: Session) -> None:
        add(session, "counted")
        raise Unauthorized("wrong", code="wrong")

    with pytest.raises(Unauthorized) as raised, db.unit_of_work(factory) as session:
        add(session, "plain")
        db.keep(session, count_and_refuse)
    assert raised.value.code == "wrong"
    assert names(factory) == {"counted"}


def test_a_rerun_refusal_replaces_the_original_and_stops_the_writers_after_it(factory):
    runs: list[int] = []

    def decide(session: Session) -> None:
        runs.append(len(runs) + 1)
        add(session, f"run-{runs[-1]}")
        if len(runs) > 1:  # what it reads has changed since: now it refuses
            raise Forbidden("decided again", code="decided_again")

    original = Conflict("original", code="original")
    with pytest.raises(DomainError) as raised, db.unit_of_work(factory) as session:
        db.keep(session, decide)
        db.keep(session, kept("after-it"))
        raise original
    assert raised.value.code == "decided_again"
    assert raised.value.__cause__ is original
    assert runs == [1, 2]
    assert names(factory) == {"run-2"}


def test_anything_else_rolls_back_everything_kept_writes_too(factory):
    with pytest.raises(RuntimeError), db.unit_of_work(factory) as session:
        add(session, "plain")
        db.keep(session, kept("kept"))
        raise RuntimeError("a bug")
    assert names(factory) == set()


def test_settle_refusal_then_the_unit_of_work_commits(factory):
    session = factory()
    try:
        add(session, "plain")
        db.keep(session, kept("kept"))
        refusal = Conflict("shown in a form")
        assert db.settle_refusal(session, refusal) is refusal
        add(session, "after")
        assert db.finish(session, None) is None
    finally:
        session.close()
    assert names(factory) == {"kept", "after"}


def test_settle_refusal_commits_nothing_itself(factory):
    session = factory()
    try:
        db.keep(session, kept("kept"))
        db.settle_refusal(session, Conflict("shown in a form"))
        bug = RuntimeError("the page failed to render")
        assert db.finish(session, bug) is bug
    finally:
        session.close()
    assert names(factory) == set()


def test_settle_refusal_answers_the_rerun_refusal(factory):
    runs: list[int] = []

    def decide(session: Session) -> None:
        runs.append(1)
        add(session, "counted")
        if len(runs) > 1:
            raise Forbidden("locked now", code="locked_now")

    session = factory()
    try:
        db.keep(session, decide)
        assert db.settle_refusal(session, Conflict("first")).code == "locked_now"
        db.finish(session, None)
    finally:
        session.close()
    assert names(factory) == {"counted"}


def test_finish_answers_what_to_raise_and_forgets_the_kept_writers(factory):
    session = factory()
    try:
        db.keep(session, kept("kept"))
        assert db.finish(session, None) is None
        add(session, "refused")
        refusal = Conflict("refused")
        assert db.finish(session, refusal) is refusal  # "kept" is not written again
        bug = RuntimeError("a bug")
        db.keep(session, kept("rolled-back"))
        assert db.finish(session, bug) is bug
    finally:
        session.close()
    assert names(factory) == {"kept"}
