"""Migration 0043 (PostgreSQL): the accounts a wide statement's transfers name (a batch's) are
checked when the statement writes them, once per distinct account, instead of at commit; a narrow
statement's, and every statement's after the downgrade (0032), at commit. Either way a transfer
naming an account that does not exist in its asset never commits, with the same message."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from tests.conftest import migrate

BEFORE = "2026_12_06_0042"
AFTER = "2026_12_07_0043"
REFUSAL = "names an account that does not exist in its asset"
WIDE = 128  # transfers in one statement from which 0043 checks the accounts as they are written


def _account(engine: Engine, owner: str, asset: str) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO ledger_accounts (owner_type, owner_id, kind, asset,"
                    " allow_negative, negative_limit_minor, debits_posted, credits_posted,"
                    " debits_pending, credits_pending, created_at)"
                    " VALUES ('system', :owner, 'test', :asset, true, 0, 0, 0, 0, 0, now())"
                    " RETURNING id"
                ),
                {"owner": owner, "asset": asset},
            ).scalar_one()
        )


def _write(conn, good: tuple[int, int], debit: int, credit: int, width: int) -> None:  # type: ignore[no-untyped-def]
    """``width`` transfers in one statement, ``bad`` (``debit`` -> ``credit``) among good ones,
    then their entries in one more: each well formed but for the accounts ``bad`` names."""
    rows = [(f"ok-{n}", *(good if n % 2 else good[::-1])) for n in range(width - 1)]
    rows.insert(width // 2, ("bad", debit, credit))
    values = ", ".join(f"('{t}', {d}, {c})" for t, d, c in rows)
    conn.execute(
        text(
            "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id, asset,"
            " amount_minor, batch_id, code, created_at)"
            f" SELECT id, 'posted', d, c, 'HKD', 100, 'raw', 'raw', now() FROM (VALUES {values})"
            " AS v(id, d, c)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO ledger_entries (transfer_id, account_id, asset, side, posted_minor,"
            " pending_minor, balance_after, created_at)"
            " SELECT id, CASE s WHEN 'D' THEN d ELSE c END, 'HKD', s, 100, 0, 0, now()"
            f" FROM (VALUES {values}) AS v(id, d, c), (VALUES ('D'), ('C')) AS side(s)"
        )
    )


def _refused_when_written(engine: Engine, good: tuple[int, int], debit: int, credit: int) -> None:
    with (
        engine.connect() as conn,
        conn.begin(),
        pytest.raises(IntegrityError, match=f"ledger transfer bad {REFUSAL}"),
    ):
        _write(conn, good, debit, credit, WIDE)


def _refused_at_commit(
    engine: Engine, good: tuple[int, int], debit: int, credit: int, width: int
) -> None:
    with engine.connect() as conn:
        trans = conn.begin()
        _write(conn, good, debit, credit, width)  # nothing refused yet
        with pytest.raises(IntegrityError, match=f"ledger transfer bad {REFUSAL}"):
            trans.commit()


def test_0043_checks_a_wide_statements_accounts_when_written_and_the_rest_at_commit(
    bare_pg: Engine,
) -> None:
    migrate(bare_pg, "upgrade", AFTER)
    good = (_account(bare_pg, "bank", "HKD"), _account(bare_pg, "alice", "HKD"))
    usd = _account(bare_pg, "carol", "USD")
    missing = 10**12
    for debit, credit in ((good[0], missing), (missing, good[1]), (good[0], usd)):
        _refused_when_written(bare_pg, good, debit, credit)
        _refused_at_commit(bare_pg, good, debit, credit, 3)  # a narrow statement
    migrate(bare_pg, "downgrade", BEFORE)
    for debit, credit in ((good[0], missing), (good[0], usd)):
        _refused_at_commit(bare_pg, good, debit, credit, WIDE)
        _refused_at_commit(bare_pg, good, debit, credit, 3)
    migrate(bare_pg, "upgrade", AFTER)
    _refused_when_written(bare_pg, good, usd, good[1])
    with bare_pg.begin() as conn:  # the control: the same statements with good accounts commit
        _write(conn, good, good[1], good[0], WIDE)
    with bare_pg.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger_transfers")).scalar_one() == WIDE
