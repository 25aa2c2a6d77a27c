"""Engine, sessions, the declarative Base and the exact ``Amount`` column type."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import psycopg
from sqlalchemy import DateTime, MetaData, Numeric, String, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator, TypeEngine

from strongroom.errors import DomainError, invariant, present

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Amount(TypeDecorator[int]):
    """An exact integer of up to 39 digits (R-ASSET-1), signed.

    PostgreSQL stores ``NUMERIC(39,0)``. SQLite has no exact type that wide (its INTEGER stops at
    2^63 and larger values silently become REAL), so there it is stored as decimal text and all
    arithmetic happens in Python under the write lock.
    """

    impl = Numeric(39, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(41))
        return dialect.type_descriptor(Numeric(39, 0, asdecimal=True))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"Amount columns take int, got {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise TypeError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


ROW_ID_LIMIT: Final = 2**53
"""Ids the API takes are below it: JSON's exact integers (a client in JavaScript reads no more),
far inside a BIGINT key. A larger number names no row and is refused before it reaches the
database, which would refuse one over 2^63 - 1 with an error of its own."""


def make_engine(url: str, *, pool_size: int = 20, options: str | None = None) -> Engine:
    """``options``: PostgreSQL settings of every connection (libpq's ``-c name=value``)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        future=True,
        hide_parameters=True,  # a statement's values (emails, hashes) stay out of errors and logs
        connect_args={} if options is None else {"options": options},
    )


GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pg_array(values: Iterable[object]) -> str:
    """``values`` as ONE PostgreSQL array literal (``{...}``), the parameter of a
    ``CAST(:name AS type[])``: None is NULL, a bool t or f, an int or Decimal its digits, a
    datetime (timezone-aware) ISO 8601, a string quoted with its backslashes and double quotes
    escaped. psycopg adapts a Python list element by element in Python: for the group commit's
    write of a small batch that cost 0.52 ms of CPU per statement against 0.16 ms with literals
    (issue #14); this is one join, and PostgreSQL parses the literal in C."""
    parts: list[str] = []
    append = parts.append
    stamp: tuple[object, str] = (None, "")  # a batch repeats one timestamp: formatted once
    for value in values:
        kind = type(value)  # the common kinds first, by identity: this runs per element
        if kind is str:
            append(_quoted(value))  # type: ignore[arg-type]
        elif value is None:
            append("NULL")
        elif kind is int or kind is Decimal:
            append(str(value))
        elif isinstance(value, bool):
            append("t" if value else "f")
        elif isinstance(value, str):  # a subclass (a StrEnum): its text, not its str()
            append(_quoted(str.__str__(value)))
        elif isinstance(value, int):
            append(int.__repr__(value))
        elif isinstance(value, datetime):
            if stamp[0] is not value:
                invariant(value.tzinfo is not None, "a timestamp parameter is timezone-aware")
                stamp = (value, '"' + value.isoformat() + '"')
            append(stamp[1])
        else:
            raise TypeError(f"no array literal for {type(value).__name__}")
    return "{" + ",".join(parts) + "}"


class DriverStatement:
    """A PostgreSQL statement of the group commit's hot path, run by ``driver_rows`` on the
    session's own psycopg connection, in its transaction. Written with ``:name`` parameters as a
    ``text()`` statement is (and no ``%``); kept as psycopg's ``%(name)s`` form."""

    __slots__ = ("sql",)

    def __init__(self, sql: str) -> None:
        invariant("%" not in sql, "a driver statement has no % (psycopg's placeholder sign)")
        self.sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


def driver_rows(
    session: Session, statement: DriverStatement, params: Mapping[str, object]
) -> list[tuple[Any, ...]]:
    """Run ``statement`` (prepared) on the session's psycopg connection; its rows (none for a
    statement that returns none). SQLAlchemy's execution path (compiled cache, result metadata,
    row processing) cost the group commit about 0.09 ms of CPU per statement, a sixth of the
    server's CPU per single transfer (issue #14); nothing here needs it: the parameters are
    plain values and array literals (``pg_array``), the rows plain tuples. A database error is
    raised as SQLAlchemy's exception of the same kind (``IntegrityError``, ...), as through
    ``session.execute``; a broken connection is invalidated, so the pool does not reuse it."""
    connection = session.connection()
    driver = cast(psycopg.Connection[tuple[Any, ...]], connection.connection.driver_connection)
    try:
        with driver.cursor() as cursor:
            cursor.execute(statement.sql, params, prepare=True)
            result = cursor.pgresult  # its status, not ``description``: that builds columns
            if result is None or result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                return []
            return cursor.fetchall()
    except psycopg.Error as error:
        if driver.broken:
            connection.invalidate(error)
        raise as_sqlalchemy_error(statement.sql, error) from error


def as_sqlalchemy_error(statement: str, error: Exception) -> Exception:
    """A driver's exception as SQLAlchemy's (``IntegrityError`` for a refusal by the database's
    rules, ``OperationalError`` for a lost connection, ...), without its parameters; any other
    exception as it is."""
    if not isinstance(error, psycopg.Error):
        return error
    return DBAPIError.instance(statement, None, error, psycopg.Error, hide_parameters=True)


def make_group_commit_engine(engine: Engine, *, connections: int) -> Engine:
    """PostgreSQL: the group commit's own connections to ``engine``'s database (issue #14).

    Their prepared statements always run a generic plan (``plan_cache_mode``): every statement
    of a batch is a lookup or a write by key, planned once per connection, where PostgreSQL
    would otherwise plan several of them again on every batch (the transfers' fast-lane read
    took 0.57 ms to bind, against 0.13 ms with its generic plan; ``log_min_duration_statement``
    during the benchmark). The application's other statements keep PostgreSQL's own choice."""
    invariant(engine.dialect.name == "postgresql", "PostgreSQL only")
    url = engine.url.render_as_string(hide_password=False)
    return make_engine(url, pool_size=connections, options=GENERIC_PLANS)


def _sqlite_engine(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # One writer at a time, taken up front: no lock upgrade can fail half way.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


# ---------------------------------------------------------------------------- unit of work
#
# One transaction per request, CLI command or worker step, owned by whoever opened it: commit on
# success; on a DomainError (a refusal) roll back everything except the records the services
# marked as kept; on anything else roll back. Nothing else in the code base commits.

KEPT_WRITERS = "strongroom.kept_writers"
T = TypeVar("T")


def keep(session: Session, writer: Callable[[Session], T]) -> T:
    """Run ``writer`` now and keep what it writes even if the unit of work is refused.

    The one way a service says "this record stays when the request is refused": failure
    counters, lockouts, audit entries, alert emails. On a refusal the unit of work rolls back
    everything, then runs the kept writers again, in order, in a fresh transaction that it
    commits. So a writer must read what it needs afresh (ids and values, not objects created in
    the refused transaction), under a lock where a count must be exact, and decide again: it may
    raise a DomainError after writing, and the first such refusal in the re-run is the one the
    caller sees (its writes are kept; the writers after it do not run).
    """
    session.info.setdefault(KEPT_WRITERS, []).append(writer)
    return writer(session)


def settle_refusal(session: Session, error: DomainError) -> DomainError:
    """Roll back a refused unit of work's writes except the kept ones (rewritten, not yet
    committed); the refusal to report. For callers that answer a refusal themselves (a web form
    showing the error) and let the unit of work commit afterwards."""
    writers: list[Callable[[Session], object]] = session.info.pop(KEPT_WRITERS, [])
    session.rollback()
    for writer in writers:
        try:
            writer(session)
        except DomainError as decided:
            return decided
    return error


def finish(session: Session, error: BaseException | None) -> BaseException | None:
    """End a unit of work: commit on success, keep-and-commit on a refusal, roll back on
    anything else; the exception the caller should raise (None after a success)."""
    try:
        if error is None:
            session.commit()
            return None
        if isinstance(error, DomainError):
            decided = settle_refusal(session, error)
            session.commit()
            return decided
        session.rollback()
        return error
    finally:
        session.info.pop(KEPT_WRITERS, None)


def idle(session: Session) -> bool:
    """Whether ending the unit of work needs no database work: no transaction in progress and
    no kept writer (``finish`` of a success and ``close`` then make no round trip)."""
    return not session.in_transaction() and not session.info.get(KEPT_WRITERS)


def hand_off(session: Session) -> None:
    """Commit the unit of work's writes so far, before it waits on work done in another
    transaction (the group-commit batcher applies transfers in its own). Only the money-movement
    service calls it, after writing nothing but idempotent get-or-creates (wallets opened on
    first use); the unit of work goes on in a new transaction."""
    finish(session, None)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction owned by the caller (CLI command, worker step, batch): see ``finish``."""
    session = factory()
    try:
        try:
            yield session
        except BaseException as error:
            raised = finish(session, error)
            if raised is error:
                raise
            raise present(raised, "a refused unit of work reports a refusal") from error
        finish(session, None)
    finally:
        session.close()


def insert_for(session: Session) -> Callable[..., Any]:
    """The dialect's ``insert`` (``on_conflict_do_nothing`` and ``returning`` on both)."""
    return postgresql.insert if is_postgres(session) else sqlite.insert


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "strongroom:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration (``strongroom db upgrade``; also on ``serve`` start)."""
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
