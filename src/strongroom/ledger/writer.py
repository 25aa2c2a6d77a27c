"""Writing a batch's rows in as few round trips as each database allows.

PostgreSQL: binary ``COPY`` for transfers and entries of larger batches (a multi-row INSERT
for small ones), and one ``UPDATE ... FROM unnest(...)`` for every touched account. SQLite: Core
executemany. Always Core on the tables, never the ORM's per-object bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg
from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from strongroom.db import DriverStatement, as_sqlalchemy_error, driver_rows, pg_array
from strongroom.ledger.models import Account, Entry, Lock, LockUse, Transfer

COPY_MIN_ROWS = 32
TRANSFERS = cast(Table, Transfer.__table__)
ENTRIES = cast(Table, Entry.__table__)
ACCOUNTS = cast(Table, Account.__table__)
LOCKS = cast(Table, Lock.__table__)
LOCK_USES = cast(Table, LockUse.__table__)

TRANSFER_COLUMNS = (
    "id",
    "kind",
    "debit_account_id",
    "credit_account_id",
    "asset",
    "amount_minor",
    "pending_id",
    "timeout_at",
    "batch_id",
    "code",
    "note",
    "created_at",
)
ENTRY_COLUMNS = (
    "transfer_id",
    "account_id",
    "asset",
    "side",
    "posted_minor",
    "pending_minor",
    "balance_after",
    "created_at",
)
TRANSFER_TYPES = (
    "varchar",
    "varchar",
    "int8",
    "int8",
    "varchar",
    "numeric",
    "varchar",
    "timestamptz",
    "varchar",
    "varchar",
    "varchar",
    "timestamptz",
)
ENTRY_TYPES = (
    "varchar",
    "int8",
    "varchar",
    "varchar",
    "numeric",
    "numeric",
    "numeric",
    "timestamptz",
)
BALANCE_COLUMNS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")

_PG_UPDATE = DriverStatement(
    "UPDATE ledger_accounts AS a SET debits_posted = v.dp, credits_posted = v.cp,"
    " debits_pending = v.dpn, credits_pending = v.cpn"
    " FROM unnest(CAST(:ids AS bigint[]), CAST(:dp AS numeric[]), CAST(:cp AS numeric[]),"
    " CAST(:dpn AS numeric[]), CAST(:cpn AS numeric[])) AS v(id, dp, cp, dpn, cpn)"
    " WHERE a.id = v.id"
)

Rows = Sequence[tuple[Any, ...]]


def write(session: Session, transfers: Rows, entries: Rows, balances: Rows) -> None:
    """Insert ``transfers`` and ``entries`` (tuples in the column orders above; ``transfers``
    may be empty when ``write_transfers`` wrote them earlier in the transaction) and set the
    balance fields of ``balances`` rows ``(id, dp, cp, dpn, cpn)``."""
    if session.get_bind().dialect.name != "postgresql":
        if transfers:
            _insert(session, TRANSFERS, TRANSFER_COLUMNS, transfers)
        _insert(session, ENTRIES, ENTRY_COLUMNS, entries)
        session.execute(
            update(ACCOUNTS).where(ACCOUNTS.c.id == bindparam("row_id")),
            [
                {"row_id": row[0], **dict(zip(BALANCE_COLUMNS, row[1:], strict=True))}
                for row in balances
            ],
        )
        return
    if len(entries) < COPY_MIN_ROWS:
        _write_small(session, transfers, entries, balances)
        return
    if transfers:
        write_transfers(session, transfers)
    if len(entries) >= COPY_MIN_ROWS:
        _copy(session, "ledger_entries", ENTRY_COLUMNS, ENTRY_TYPES, entries)
    else:
        _insert(session, ENTRIES, ENTRY_COLUMNS, entries)
    ids, dp, cp, dpn, cpn = (pg_array(column) for column in zip(*balances, strict=True))
    driver_rows(session, _PG_UPDATE, {"ids": ids, "dp": dp, "cp": cp, "dpn": dpn, "cpn": cpn})


_PG_TRANSFERS_CTE = """
    t AS (
        INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id, asset,
                                      amount_minor, pending_id, timeout_at, batch_id, code, note,
                                      created_at)
        SELECT * FROM unnest(CAST(:t_id AS text[]), CAST(:t_kind AS text[]),
                             CAST(:t_debit AS bigint[]), CAST(:t_credit AS bigint[]),
                             CAST(:t_asset AS text[]), CAST(:t_amount AS numeric[]),
                             CAST(:t_pending AS text[]), CAST(:t_timeout AS timestamptz[]),
                             CAST(:t_batch AS text[]), CAST(:t_code AS text[]),
                             CAST(:t_note AS text[]), CAST(:t_at AS timestamptz[]))
    ),"""
_PG_ENTRIES_AND_BALANCES = """
    e AS (
        INSERT INTO ledger_entries (transfer_id, account_id, asset, side, posted_minor,
                                    pending_minor, balance_after, created_at)
        SELECT * FROM unnest(CAST(:e_transfer AS text[]), CAST(:e_account AS bigint[]),
                             CAST(:e_asset AS text[]), CAST(:e_side AS text[]),
                             CAST(:e_posted AS numeric[]), CAST(:e_pending AS numeric[]),
                             CAST(:e_after AS numeric[]), CAST(:e_at AS timestamptz[]))
    )
    UPDATE ledger_accounts AS a SET debits_posted = v.dp, credits_posted = v.cp,
           debits_pending = v.dpn, credits_pending = v.cpn
      FROM unnest(CAST(:ids AS bigint[]), CAST(:dp AS numeric[]), CAST(:cp AS numeric[]),
                  CAST(:dpn AS numeric[]), CAST(:cpn AS numeric[])) AS v(id, dp, cp, dpn, cpn)
     WHERE a.id = v.id
"""
_PG_WRITE_ALL = DriverStatement("WITH" + _PG_TRANSFERS_CTE + _PG_ENTRIES_AND_BALANCES)
_PG_WRITE_ENTRIES = DriverStatement("WITH" + _PG_ENTRIES_AND_BALANCES)
_T_PARAMS = (
    "t_id",
    "t_kind",
    "t_debit",
    "t_credit",
    "t_asset",
    "t_amount",
    "t_pending",
    "t_timeout",
    "t_batch",
    "t_code",
    "t_note",
    "t_at",
)
_E_PARAMS = (
    "e_transfer",
    "e_account",
    "e_asset",
    "e_side",
    "e_posted",
    "e_pending",
    "e_after",
    "e_at",
)


def _write_small(session: Session, transfers: Rows, entries: Rows, balances: Rows) -> None:
    """A small batch's transfers, entries and balances in ONE statement of arrays (a single
    transfer's group commit: one round trip under the account locks instead of three, and one
    statement text whatever the batch size, so PostgreSQL prepares its plan once)."""
    params: dict[str, Any] = dict(zip(_E_PARAMS, _columns(entries, len(_E_PARAMS)), strict=True))
    params.update(zip(("ids", "dp", "cp", "dpn", "cpn"), _columns(balances, 5), strict=True))
    if transfers:
        params.update(zip(_T_PARAMS, _columns(transfers, len(_T_PARAMS)), strict=True))
    driver_rows(session, _PG_WRITE_ALL if transfers else _PG_WRITE_ENTRIES, params)


def _columns(rows: Rows, width: int) -> list[str]:
    """Rows as one array literal per column (``width`` columns; empty arrays for no rows)."""
    if not rows:
        return ["{}"] * width
    return [pg_array(column) for column in zip(*rows, strict=True)]


def write_transfers(session: Session, transfers: Rows) -> None:
    """Insert ``transfers`` alone (a batch writes them before it locks its accounts: they do not
    depend on balances; their entries, which carry ``balance_after``, follow under the lock)."""
    if session.get_bind().dialect.name == "postgresql" and len(transfers) * 2 >= COPY_MIN_ROWS:
        _copy(session, "ledger_transfers", TRANSFER_COLUMNS, TRANSFER_TYPES, transfers)
    else:
        _insert(session, TRANSFERS, TRANSFER_COLUMNS, transfers)


def _insert(session: Session, table: Table, columns: Sequence[str], rows: Rows) -> None:
    session.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])


def _copy(
    session: Session, table: str, columns: Sequence[str], types: Sequence[str], rows: Rows
) -> None:
    """Binary ``COPY``: PostgreSQL parses no text (numbers, timestamps) and psycopg formats less.
    A refusal by the database's rules raises SQLAlchemy's ``IntegrityError``, as a statement
    through the session would (the copy goes through the driver's own cursor)."""
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    try:
        with cursor, cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as error:
        raise as_sqlalchemy_error(statement, error) from error
