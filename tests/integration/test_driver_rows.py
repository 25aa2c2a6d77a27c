"""``db.driver_rows``: the group commit's statements run on the session's own psycopg connection
(issue #14). In the session's transaction, with its rows as tuples; a refusal by the database
is SQLAlchemy's ``IntegrityError`` as through ``session.execute``; a lost connection is
SQLAlchemy's ``OperationalError`` and is not handed out by the pool again."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from strongroom import db
from strongroom.db import DriverStatement, driver_rows, pg_array

MAKE = "CREATE TABLE IF NOT EXISTS driver_rows_probe (k text PRIMARY KEY, n bigint NOT NULL)"
INSERT = DriverStatement(
    "INSERT INTO driver_rows_probe (k, n)"
    " SELECT * FROM unnest(CAST(:ks AS text[]), CAST(:ns AS bigint[])) RETURNING k, n"
)
BUMP = DriverStatement("UPDATE driver_rows_probe SET n = n + :by WHERE k = :k")
READ = DriverStatement("SELECT n FROM driver_rows_probe WHERE k = :k")


@pytest.fixture
def factory(pg_db: Engine):
    with pg_db.begin() as conn:
        conn.execute(text(MAKE))
        conn.execute(text("TRUNCATE driver_rows_probe"))
    yield db.make_session_factory(pg_db)
    with pg_db.begin() as conn:
        conn.execute(text("DROP TABLE driver_rows_probe"))


def test_placeholders_become_psycopgs_and_casts_stay():
    statement = DriverStatement("SELECT CAST(:a AS text[]), :b::int WHERE x = :d_1")
    assert statement.sql == "SELECT CAST(%(a)s AS text[]), %(b)s::int WHERE x = %(d_1)s"
    with pytest.raises(Exception, match="no %"):
        DriverStatement("SELECT 1 WHERE k LIKE 'a%'")


def test_rows_in_the_sessions_transaction(factory):
    with factory() as session:
        made = driver_rows(session, INSERT, {"ks": pg_array(["a", "b"]), "ns": pg_array([1, 2])})
        assert sorted(made) == [("a", 1), ("b", 2)]
        assert driver_rows(session, BUMP, {"by": 5, "k": "a"}) == []  # no rows: none returned
        # the ORM session sees the driver's writes: one transaction
        assert session.scalar(text("SELECT n FROM driver_rows_probe WHERE k = 'a'")) == 6
        session.rollback()
    with factory() as session:
        assert driver_rows(session, READ, {"k": "a"}) == []  # rolled back with the session
        driver_rows(session, INSERT, {"ks": pg_array(["c"]), "ns": pg_array([3])})
        session.commit()
    with factory() as session:
        assert driver_rows(session, READ, {"k": "c"}) == [(3,)]


def test_a_refusal_is_an_integrity_error_and_the_session_goes_on(factory):
    with factory() as session:
        driver_rows(session, INSERT, {"ks": pg_array(["a"]), "ns": pg_array([1])})
        session.commit()
    with factory() as session:
        with pytest.raises(IntegrityError) as raised:
            driver_rows(session, INSERT, {"ks": pg_array(["z", "a"]), "ns": pg_array([9, 9])})
        assert "9" not in str(raised.value).split("[SQL:")[0]  # no parameters in the message
        session.rollback()
        assert driver_rows(session, READ, {"k": "z"}) == []  # nothing of the refused statement
        assert driver_rows(session, READ, {"k": "a"}) == [(1,)]


def test_a_lost_connection_is_an_operational_error_and_is_not_reused(factory, pg_db: Engine):
    with factory() as session:
        pid = driver_rows(session, DriverStatement("SELECT pg_backend_pid()"), {})[0][0]
        with pg_db.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(OperationalError):
            driver_rows(session, READ, {"k": "a"})
    with factory() as session:  # the pool hands out a working connection
        found = driver_rows(session, DriverStatement("SELECT pg_backend_pid()"), {})[0][0]
        assert found != pid
