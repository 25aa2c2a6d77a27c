"""``strongroom ledger check`` streams the journal in chunks (bounded memory at any size): cut
into chunks of two rows, so that every account's and transfer's rows straddle a chunk boundary,
it finds the same planted inconsistencies as in one chunk."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.ledger.models import Account, Entry

HKD = "HKD"
WALLETS = 5


@pytest.fixture
def journal(factory: sessionmaker[Session]) -> dict[str, int]:
    """Top-ups to five wallets, payments between them, a partly posted and a voided hold."""
    with unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=HKD).id
        wallets = [
            ledger.user_wallet(session=session, user_id=f"u{n}", asset=HKD).id
            for n in range(WALLETS)
        ]
    specs = [_spec(bank, wallet, 100_00) for wallet in wallets]
    specs += [_spec(wallets[n], wallets[(n + 1) % WALLETS], 7_00 + n) for n in range(WALLETS)]
    specs += [_spec(wallets[0], wallets[1], 5_00, kind=TransferKind.PENDING, id="hold-1")]
    specs += [_spec(wallets[2], wallets[3], 3_00, kind=TransferKind.PENDING, id="hold-2")]
    with unit_of_work(factory) as session:
        ledger.create_transfers(session=session, specs=specs)
    resolutions = [
        TransferSpec(kind=TransferKind.POST_PENDING, pending_id="hold-1", amount_minor=2_00),
        TransferSpec(kind=TransferKind.VOID_PENDING, pending_id="hold-2"),
    ]
    with unit_of_work(factory) as session:
        ledger.create_transfers(session=session, specs=resolutions)
    return {"bank": bank, **{f"u{n}": wallet for n, wallet in enumerate(wallets)}}


def _spec(debit: int, credit: int, amount: int, **extra: object) -> TransferSpec:
    return TransferSpec(
        debit_account_id=debit, credit_account_id=credit, asset=HKD, amount_minor=amount, **extra
    )  # type: ignore[arg-type]


def check(factory: sessionmaker[Session], chunk_rows: int) -> reports.CheckReport:
    with factory() as session:
        return reports.check(session=session, chunk_rows=chunk_rows)


def test_a_sound_journal_passes_in_any_chunk_size(factory, journal):
    counts = []
    for chunk_rows in (1, 2, 3, reports.CHECK_CHUNK_ROWS):
        report = check(factory, chunk_rows)
        assert report.ok, report.problems
        counts.append((report.accounts, report.entries, report.transfers))
    with factory() as session:
        entries = session.scalar(select(func.count()).select_from(Entry))
    assert counts == [(WALLETS + 1, entries, 2 * WALLETS + 4)] * 4


def test_planted_inconsistencies_are_found_in_chunks_of_two(factory, journal, any_db):
    _plant(any_db, journal)
    whole = check(factory, reports.CHECK_CHUNK_ROWS)
    streamed = check(factory, 2)
    assert streamed.problems == whole.problems
    assert (streamed.accounts, streamed.entries, streamed.transfers) == (
        whole.accounts,
        whole.entries,
        whole.transfers,
    )
    problems = "\n".join(streamed.problems)
    assert f"account {journal['u2']} ({HKD}): stored balances" in problems
    assert f"account {journal['u3']} ({HKD}): stored balances" in problems  # lost a credit entry
    assert "running balance" in problems
    assert "expected one debit and one credit entry, found 1" in problems
    assert f"{HKD}: posted debits" in problems


def _plant(engine: Engine, journal: dict[str, int]) -> None:
    """A tampered balance, a lost credit entry and a wrong running balance. The journal is
    append-only, so its rules are switched off for this connection (PostgreSQL) or dropped from
    this test's own database (SQLite), as only someone with the database's keys could."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for name in ("ledger_entries_immutable_delete", "ledger_entries_immutable_update"):
                conn.execute(text(f"DROP TRIGGER {name}"))
        conn.execute(  # upwards: the CHECKs on accounts still hold, and they stay on
            update(Account).where(Account.id == journal["u2"]).values(credits_posted=10**9)
        )
        payment_to_u3 = select(Entry.id).where(
            Entry.account_id == journal["u3"], Entry.side == "C", Entry.posted_minor == 7_02
        )
        conn.execute(Entry.__table__.delete().where(Entry.id == payment_to_u3.scalar_subquery()))
        first_of_u4 = select(func.min(Entry.id)).where(Entry.account_id == journal["u4"])
        conn.execute(
            update(Entry).where(Entry.id == first_of_u4.scalar_subquery()).values(balance_after=1)
        )
