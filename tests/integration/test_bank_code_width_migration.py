"""Migration 0041 (bank code width) on a database that already holds merchants and payout
rows: the upgrade keeps every row (also rows that reference the rebuilt tables, which the
migration must not break), stores 12-digit codes afterwards, and on PostgreSQL the downgrade
refuses while a longer code is stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from strongroom import db
from tests.conftest import migrate

BEFORE = "2026_12_06_0040"
AFTER = "2026_12_06_0041"
CNAPS = "102100099996"


@pytest.fixture(params=["postgresql", "sqlite"])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of either kind, not migrated yet."""
    if request.param == "postgresql":
        yield request.getfixturevalue("bare_pg")
        return
    engine = db.make_engine(f"sqlite:///{tmp_path / 'migrate.sqlite3'}")
    yield engine
    engine.dispose()


def _seed(engine: Engine) -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO merchants (id, name, mcc, region, city, status, discount_rate_bps,"
                " settlement_holder_name, settlement_bank_code, settlement_account_number,"
                " webhook_secret_version, created_at)"
                " VALUES ('m_old', 'Old Shop', '5411', 'HK', 'Hong Kong', 'active', 80,"
                " 'Old Shop Ltd', '004', '12345678', 1, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO merchant_payout_batches (id, merchant_id, asset, rows_count,"
                " total_minor, status, actor, created_at)"
                " VALUES ('pb_old', 'm_old', 'HKD', 1, 500, 'completed', 'owner', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO merchant_payout_rows (batch_id, reference, line, holder_name,"
                " bank_code, account_number, asset, amount_minor, payout_id, status, updated_at)"
                " VALUES ('pb_old', 'r1', 2, 'Chan Tai Man', '024', '87654321', 'HKD', 500,"
                " 'po_old_r1', 'paid', :now)"
            ),
            {"now": now},
        )


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_upgrade_keeps_rows_and_stores_twelve_digit_codes(bare_engine: Engine) -> None:
    migrate(bare_engine, "upgrade", BEFORE)
    _seed(bare_engine)

    migrate(bare_engine, "upgrade", AFTER)

    assert _count(bare_engine, "SELECT COUNT(*) FROM merchants WHERE id = 'm_old'") == 1
    assert _count(bare_engine, "SELECT COUNT(*) FROM merchant_payout_batches") == 1
    assert _count(bare_engine, "SELECT COUNT(*) FROM merchant_payout_rows") == 1
    with bare_engine.begin() as conn:
        conn.execute(
            text("UPDATE merchants SET settlement_bank_code = :c WHERE id = 'm_old'"),
            {"c": CNAPS},
        )
        conn.execute(text("UPDATE merchant_payout_rows SET bank_code = :c"), {"c": CNAPS})
        stored = conn.execute(text("SELECT settlement_bank_code FROM merchants")).scalar_one()
    assert stored == CNAPS


@pytest.mark.parametrize("bare_engine", ["postgresql"], indirect=True)
def test_downgrade_refuses_while_a_longer_code_is_stored(bare_engine: Engine) -> None:
    migrate(bare_engine, "upgrade", BEFORE)
    _seed(bare_engine)
    migrate(bare_engine, "upgrade", AFTER)
    with bare_engine.begin() as conn:
        conn.execute(text("UPDATE merchant_payout_rows SET bank_code = :c"), {"c": CNAPS})

    with pytest.raises(RuntimeError, match=r"merchant_payout_rows\.bank_code: 1 row"):
        migrate(bare_engine, "downgrade", BEFORE)

    with bare_engine.begin() as conn:
        conn.execute(text("UPDATE merchant_payout_rows SET bank_code = '024'"))
    migrate(bare_engine, "downgrade", BEFORE)
    assert _count(bare_engine, "SELECT COUNT(*) FROM merchant_payout_rows") == 1
    assert _count(bare_engine, "SELECT COUNT(*) FROM merchants") == 1


@pytest.mark.parametrize("bare_engine", ["sqlite"], indirect=True)
def test_downgrade_on_sqlite_keeps_the_rows(bare_engine: Engine) -> None:
    migrate(bare_engine, "upgrade", BEFORE)
    _seed(bare_engine)
    migrate(bare_engine, "upgrade", AFTER)
    with bare_engine.begin() as conn:
        conn.execute(text("UPDATE merchant_payout_rows SET bank_code = :c"), {"c": CNAPS})

    migrate(bare_engine, "downgrade", BEFORE)

    with bare_engine.connect() as conn:
        stored = conn.execute(text("SELECT bank_code FROM merchant_payout_rows")).scalar_one()
    assert stored == CNAPS
    assert _count(bare_engine, "SELECT COUNT(*) FROM merchants") == 1
