from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

import strongroom.models  # noqa: F401  (registers every table)
from strongroom import db
from strongroom.db import Base
from tests import pg

IN_CI = os.environ.get("CI", "").lower() == "true"
"""With ``CI=true`` every test must run: what a test needs and lacks is a failure, not a skip."""


def missing(what: str, how: str) -> NoReturn:
    """The test needs ``what`` (a service, a tool, a build, a capability of the machine) and this
    machine lacks it: a skip that says ``how`` to get it, or under ``CI=true`` a failure, so a
    CI machine set up wrong cannot pass by running less. A skip for what a platform cannot do
    (not for a missing install) calls ``pytest.skip`` itself and says why in a comment."""
    if IN_CI:
        pytest.fail(f"missing under CI=true: {what}; {how}")
    pytest.skip(f"missing: {what}; {how}")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    try:
        with pg.server_url() as url:
            yield url
    except (RuntimeError, OSError) as error:
        missing("PostgreSQL", str(error))


@pytest.fixture(scope="session")
def pg_engine(pg_admin_url: str) -> Iterator[Engine]:
    """A fresh database for this test run, migrated to head."""
    name = f"strongroom_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_admin_url).set(database=name)
    engine = db.make_engine(url.render_as_string(hide_password=False), pool_size=40)
    db.upgrade(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def bare_pg(pg_admin_url: str) -> Iterator[Engine]:
    """An empty PostgreSQL database, not migrated (for tests of one migration)."""
    name = f"strongroom_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = db.make_engine(make_url(pg_admin_url).set(database=name).render_as_string(False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(engine: Engine, verb: str, revision: str) -> None:
    """``alembic upgrade|downgrade revision`` on ``engine``'s database."""
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, verb)(config, revision)


TABLES = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))


def _truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def pg_db(pg_engine: Engine) -> Engine:
    """The PostgreSQL engine with every table emptied before the test."""
    _truncate(pg_engine)
    return pg_engine


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'test.sqlite3'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest) -> Engine:
    """Run the test on both supported databases."""
    name = "pg_db" if request.param == "postgresql" else "sqlite_db"
    engine: Engine = request.getfixturevalue(name)
    return engine


@pytest.fixture
def factory(any_db: Engine) -> sessionmaker[Session]:
    return db.make_session_factory(any_db)
