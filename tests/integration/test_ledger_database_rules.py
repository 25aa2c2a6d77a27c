"""The database's own rules for the journal (issue #9, point 5), written straight into the tables
through a session, around the ledger service: on PostgreSQL a transfer commits only with exactly
one debit and one credit entry carrying its asset, accounts and amount; on both databases the
journal is append-only and the CHECKs hold (SQLite gets them as triggers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Table, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work, utcnow
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Account, Entry, Transfer
from strongroom.reserves.models import PorAudit, PorReserve

HKD = "HKD"
TRANSFERS: Table = Transfer.__table__  # type: ignore[assignment]
ENTRIES: Table = Entry.__table__  # type: ignore[assignment]
ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]
on_postgres = pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
on_sqlite = pytest.mark.parametrize("any_db", ["sqlite"], indirect=True)
DEFERRED_REFUSAL = "does not balance"


@pytest.fixture
def book(factory: sessionmaker[Session]) -> dict[str, int]:
    """The omnibus bank account (may go negative) and Alice's and Bob's HKD wallets."""
    with unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=HKD)
        alice = ledger.user_wallet(session=session, user_id="alice", asset=HKD)
        bob = ledger.user_wallet(session=session, user_id="bob", asset=HKD)
        return {"bank": bank.id, "alice": alice.id, "bob": bob.id}


def write_transfer(session: Session, book: dict[str, int], **change: Any) -> str:
    """A posted HK$1 transfer from the bank to Alice, with ``change`` applied; no entries."""
    row = {
        "id": "t1",
        "kind": "posted",
        "debit_account_id": book["bank"],
        "credit_account_id": book["alice"],
        "asset": HKD,
        "amount_minor": 100,
        "pending_id": None,
        "timeout_at": None,
        "batch_id": "raw",
        "code": "raw",
        "created_at": utcnow(),
    } | change
    session.execute(TRANSFERS.insert().values(row))
    return str(row["id"])


def entry_row(transfer_id: str, account_id: int, side: str, **change: Any) -> dict[str, Any]:
    return {
        "transfer_id": transfer_id,
        "account_id": account_id,
        "asset": HKD,
        "side": side,
        "posted_minor": 100,
        "pending_minor": 0,
        "balance_after": 0,
        "created_at": utcnow(),
    } | change


def write_entry(
    session: Session, transfer_id: str, account_id: int, side: str, **change: Any
) -> None:
    session.execute(ENTRIES.insert().values(entry_row(transfer_id, account_id, side, **change)))


def count(factory: sessionmaker[Session], table: Table) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


# ------------------------------------------------------------------ one debit, one credit


def test_a_well_formed_transfer_written_by_hand_commits(factory, book):
    """The control for the refusals below: the rules let a right transfer through, also one
    too wide for SQLite's integers (amounts are exact decimal text there)."""
    for transfer_id, amount in (("small", 100), ("wide", 2**100)):
        with factory() as session:
            write_transfer(session, book, id=transfer_id, amount_minor=amount)
            write_entry(session, transfer_id, book["bank"], "D", posted_minor=amount)
            write_entry(session, transfer_id, book["alice"], "C", posted_minor=amount)
            session.commit()
    assert count(factory, TRANSFERS) == 2
    assert count(factory, ENTRIES) == 4


def test_a_pending_transfer_and_its_partial_post_written_by_hand_commit(factory, book):
    """Posting part of a pending transfer moves the amount posted and releases the whole
    reservation: what the trigger expects of each kind matches what the service writes."""
    with factory() as session:
        write_transfer(session, book, id="hold", kind="pending")
        write_entry(session, "hold", book["bank"], "D", posted_minor=0, pending_minor=100)
        write_entry(session, "hold", book["alice"], "C", posted_minor=0, pending_minor=100)
        write_transfer(
            session, book, id="post", kind="post_pending", amount_minor=60, pending_id="hold"
        )
        for account, side in ((book["bank"], "D"), (book["alice"], "C")):
            write_entry(session, "post", account, side, posted_minor=60, pending_minor=-100)
        session.commit()
    assert count(factory, TRANSFERS) == 2


@on_postgres
@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        pytest.param([], "0 debit and 0 credit entries", id="no-entries"),
        pytest.param([("bank", "D", 100)], "1 debit and 0 credit entries", id="debit-only"),
        pytest.param([("alice", "C", 100)], "0 debit and 1 credit entries", id="credit-only"),
        pytest.param(
            [("bank", "D", 100), ("alice", "C", 90)], "differ from its", id="unequal-amounts"
        ),
        pytest.param(
            [("bank", "D", 90), ("alice", "C", 90)], "differ from its", id="not-its-amount"
        ),
        pytest.param(
            [("bank", "D", 100), ("bob", "C", 100)], "differ from its", id="another-account"
        ),
    ],
)
def test_postgres_refuses_a_broken_transfer_at_commit(factory, book, entries, reason):
    with factory() as session:
        write_transfer(session, book)
        for account, side, posted in entries:  # each insert goes through: the check is deferred
            write_entry(session, "t1", book[account], side, posted_minor=posted)
        with pytest.raises(IntegrityError, match=f"{DEFERRED_REFUSAL}: .*{reason}"):
            session.commit()
    assert count(factory, TRANSFERS) == 0
    assert count(factory, ENTRIES) == 0


WIDE = 128  # transfers of one statement from which migration 0043 checks pairs as written


def pairs(book: dict[str, int], ids: list[str]) -> list[dict[str, Any]]:
    """The debit and credit entries of bank-to-Alice HK$1 transfers ``ids``."""
    return [
        entry_row(transfer_id, book[account], side)
        for transfer_id in ids
        for account, side in (("bank", "D"), ("alice", "C"))
    ]


def queued(session: Session) -> int:
    """The transfer statements of this transaction still waiting for the commit check."""
    return int(session.scalar(text("SELECT count(*) FROM ledger_transfer_checks")) or 0)


@on_postgres
@pytest.mark.parametrize(
    ("debit", "credit"),
    [
        pytest.param({}, {"posted_minor": 90}, id="unequal-amounts"),
        pytest.param({"posted_minor": 90}, {"posted_minor": 90}, id="not-its-amount"),
        pytest.param({}, {"account_id": "bob"}, id="another-account"),
        pytest.param({}, {"pending_minor": 100}, id="a-reservation-too"),
        pytest.param({"account_id": "alice"}, {"account_id": "bank"}, id="sides-swapped"),
    ],
)
def test_postgres_refuses_a_broken_pair_written_in_one_statement(factory, book, debit, credit):
    """Migration 0043 checks a transfer's two entries in the statement that writes both; one
    that does not match is left to the commit check, which refuses it (a well-formed transfer of
    the same statements does not hide it)."""
    good = [f"good-{n}" for n in range(WIDE)]
    with factory() as session:
        write_transfer(session, book)
        write_transfers(session, book, good)
        for side in (debit, credit):
            if "account_id" in side:
                side["account_id"] = book[side["account_id"]]
        session.execute(
            ENTRIES.insert().values(
                [
                    entry_row("t1", book["bank"], "D") | debit,
                    entry_row("t1", book["alice"], "C") | credit,
                    *pairs(book, good),
                ]
            )
        )
        assert queued(session) == 1  # t1's statement: left for the commit check
        with pytest.raises(IntegrityError, match=f"t1 {DEFERRED_REFUSAL}: .*differ from its"):
            session.commit()
    assert count(factory, TRANSFERS) == 0
    assert count(factory, ENTRIES) == 0


def write_transfers(
    session: Session,
    book: dict[str, int],
    ids: list[str],
    kind: str = "posted",
    rows: Sequence[dict[str, Any]] = (),
) -> None:
    """HK$1 transfers ``ids`` of ``kind`` from the bank to Alice, and ``rows`` (changes to such
    a transfer), all in one statement; no entries."""
    base = {
        "kind": kind,
        "debit_account_id": book["bank"],
        "credit_account_id": book["alice"],
        "asset": HKD,
        "amount_minor": 100,
        "pending_id": None,
        "batch_id": "raw",
        "code": "raw",
        "created_at": utcnow(),
    }
    values = [base | {"id": transfer_id} for transfer_id in ids] + [base | row for row in rows]
    session.execute(TRANSFERS.insert().values(values))


@on_postgres
def test_postgres_commit_check_stays_for_a_statement_only_partly_paired(factory, book):
    """Pairs for two of a statement's three transfers: the third has no entry, so its
    statement stays queued and the commit refuses it."""
    ids = [f"p{n}" for n in range(WIDE + 1)]
    with factory() as session:
        write_transfers(session, book, ids)
        session.execute(ENTRIES.insert().values(pairs(book, ids[:-1])))
        assert queued(session) == 1
        with pytest.raises(IntegrityError, match=f"{ids[-1]} {DEFERRED_REFUSAL}: 0 debit and 0"):
            session.commit()
    assert count(factory, TRANSFERS) == 0


@on_postgres
def test_postgres_checks_pairs_written_in_one_statement_when_written(factory, book):
    """Both entries of every transfer in one statement: checked there, nothing left queued for
    the commit (also for transfers written by two statements). A savepoint rolled back takes
    the check back with it: the transfers are queued again and checked at commit."""
    ids = {batch: [f"{batch}{n}" for n in range(WIDE)] for batch in ("a", "b")}
    with factory() as session:
        for batch in ids.values():
            write_transfers(session, book, batch)
        assert queued(session) == 2
        savepoint = session.begin_nested()
        both = pairs(book, ids["a"] + ids["b"])
        session.execute(ENTRIES.insert().values(both))
        assert queued(session) == 0
        savepoint.rollback()
        assert queued(session) == 2
        for n in range(0, len(both), 2):  # a debit, then a credit statement: left for the commit
            session.execute(ENTRIES.insert().values(both[n : n + 1]))
            session.execute(ENTRIES.insert().values(both[n + 1 : n + 2]))
        assert queued(session) == 2
        session.commit()
    assert count(factory, TRANSFERS) == 2 * WIDE
    assert count(factory, ENTRIES) == 4 * WIDE


@on_postgres
def test_postgres_checks_wide_pending_posts_and_voids_as_written(factory, book):
    """Pending transfers, then partial posts of half of them and voids of the rest, each kind
    in wide statements: what 0043's statement check expects of each kind matches what the
    service writes (it looks the pending transfer up for a post's release)."""
    holds = [f"h{n}" for n in range(WIDE)]
    with factory() as session:
        write_transfers(session, book, holds, kind="pending")
        session.execute(
            ENTRIES.insert().values(
                [row | {"posted_minor": 0, "pending_minor": 100} for row in pairs(book, holds)]
            )
        )
        assert queued(session) == 0
        resolutions = [  # odd: post HK$0.60 of the hold; even: void it
            {"id": f"r{n}", "pending_id": hold, "kind": "post_pending", "amount_minor": 60}
            if n % 2
            else {"id": f"r{n}", "pending_id": hold, "kind": "void_pending"}
            for n, hold in enumerate(holds)
        ]
        write_transfers(session, book, [], rows=resolutions)
        session.execute(
            ENTRIES.insert().values(
                [
                    entry_row(r["id"], book[account], side)
                    | {
                        "posted_minor": r.get("amount_minor", 0),
                        "pending_minor": -100,
                    }
                    for r in resolutions
                    for account, side in (("bank", "D"), ("alice", "C"))
                ]
            )
        )
        assert queued(session) == 0
        session.commit()
    assert count(factory, TRANSFERS) == 2 * WIDE


@on_postgres
def test_postgres_leaves_a_narrow_statement_to_the_commit_check(factory, book):
    """Fewer than 0043's wide statement: the pair is checked at commit, as in 0032."""
    with factory() as session:
        write_transfers(session, book, ["n0", "n1"])
        session.execute(ENTRIES.insert().values(pairs(book, ["n0", "n1"])))
        assert queued(session) == 1
        session.commit()
    assert count(factory, ENTRIES) == 4


@on_postgres
def test_postgres_refuses_a_pending_post_that_keeps_part_of_the_reservation(factory, book):
    with factory() as session:
        write_transfer(session, book, id="hold", kind="pending")
        write_entry(session, "hold", book["bank"], "D", posted_minor=0, pending_minor=100)
        write_entry(session, "hold", book["alice"], "C", posted_minor=0, pending_minor=100)
        write_transfer(
            session, book, id="post", kind="post_pending", amount_minor=60, pending_id="hold"
        )
        for account, side in ((book["bank"], "D"), (book["alice"], "C")):
            write_entry(session, "post", account, side, posted_minor=60, pending_minor=-60)
        with pytest.raises(IntegrityError, match=f"post {DEFERRED_REFUSAL}: .*differ from its"):
            session.commit()
    assert count(factory, TRANSFERS) == 0


@on_postgres
def test_postgres_checks_every_transfer_of_a_statement_at_commit(factory, book):
    """Migration 0032 checks a statement's transfers together (set-based): one broken transfer
    among many well-formed ones written by one statement is still found, and nothing commits."""
    with factory() as session:
        rows = [
            {
                "id": f"many-{n}",
                "kind": "posted",
                "debit_account_id": book["bank"],
                "credit_account_id": book["alice"],
                "asset": HKD,
                "amount_minor": 100,
                "pending_id": None,
                "timeout_at": None,
                "batch_id": "raw",
                "code": "raw",
                "created_at": utcnow(),
            }
            for n in range(50)
        ]
        session.execute(TRANSFERS.insert(), rows)
        for n in range(50):
            write_entry(session, f"many-{n}", book["bank"], "D")
            if n != 37:  # many-37 gets its debit entry only
                write_entry(session, f"many-{n}", book["alice"], "C")
        with pytest.raises(IntegrityError, match=f"many-37 {DEFERRED_REFUSAL}: 1 debit and 0"):
            session.commit()
    assert count(factory, TRANSFERS) == 0
    assert count(factory, ENTRIES) == 0


def test_a_transfer_naming_an_account_of_another_asset_never_commits(factory, book):
    """The accounts a transfer names exist in its asset: on SQLite its foreign keys refuse the
    row; on PostgreSQL (0032: no per-row key) the commit check refuses the transaction."""
    with unit_of_work(factory) as session:
        usd = ledger.user_wallet(session=session, user_id="carol", asset="USD").id
    with factory() as session, pytest.raises(IntegrityError, match=r"does not exist|FOREIGN KEY"):
        write_transfer(session, book, credit_account_id=usd)
        write_entry(session, "t1", book["bank"], "D")
        write_entry(session, "t1", usd, "C")
        session.commit()
    assert count(factory, TRANSFERS) == 0


def test_an_entry_naming_no_transfer_is_refused(factory, book):
    with factory() as session:
        write_transfer(session, book)  # the control: entries of t1 go in
        write_entry(session, "t1", book["bank"], "D")
        with pytest.raises(IntegrityError, match=r"which does not exist|FOREIGN KEY"):
            write_entry(session, "no-such-transfer", book["alice"], "C")
    assert count(factory, ENTRIES) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM ledger_accounts WHERE id = :alice",
        "UPDATE ledger_accounts SET asset = 'USD' WHERE id = :alice",
    ],
)
def test_an_account_with_transfers_is_never_deleted_or_rekeyed(factory, book, statement):
    """PostgreSQL refuses it for every account (0032: the transfers' keys went); SQLite's
    foreign keys refuse it for an account that transfers name."""
    with unit_of_work(factory) as session:
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=book["bank"],
                credit_account_id=book["alice"],
                asset=HKD,
                amount_minor=100,
            ),
        )
    with factory() as session, pytest.raises(DBAPIError, match=r"never deleted|FOREIGN KEY"):
        session.execute(text(statement), {"alice": book["alice"]})
        session.commit()
    with factory() as session:
        assert session.get(Account, book["alice"]) is not None


# PostgreSQL names the key; SQLite names its columns.
TWO_ENTRIES_ON_A_SIDE = (
    "uq_ledger_entries_transfer_id_side|ledger_entries.transfer_id, ledger_entries.side"
)


def test_two_credit_entries_are_refused_by_the_unique_key(factory, book):
    with factory() as session:
        write_transfer(session, book, amount_minor=100)
        write_entry(session, "t1", book["bank"], "D")
        write_entry(session, "t1", book["alice"], "C")
        with pytest.raises(IntegrityError, match=TWO_ENTRIES_ON_A_SIDE):
            write_entry(session, "t1", book["alice"], "C")
    assert count(factory, TRANSFERS) == 0


def test_a_committed_transfer_takes_no_further_entry(factory, book):
    with unit_of_work(factory) as session:
        transfer_id = ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=book["bank"],
                credit_account_id=book["alice"],
                asset=HKD,
                amount_minor=100,
            ),
        )
    with factory() as session, pytest.raises(IntegrityError, match=TWO_ENTRIES_ON_A_SIDE):
        write_entry(session, transfer_id, book["alice"], "C")
    assert count(factory, ENTRIES) == 2


@on_sqlite
@pytest.mark.parametrize(
    ("account", "change"),
    [
        pytest.param("alice", {"posted_minor": 90}, id="not-its-amount"),
        pytest.param("bob", {}, id="another-account"),
        pytest.param("alice-usd", {"asset": "USD"}, id="another-asset"),
        pytest.param("alice", {"pending_minor": 100}, id="reserves-on-a-posted-transfer"),
    ],
)
def test_sqlite_refuses_an_entry_that_differs_from_its_transfer(factory, book, account, change):
    """SQLite cannot defer a check to commit; it checks each entry against its transfer."""
    with unit_of_work(factory) as session:  # the composite key needs an account in USD
        usd = ledger.user_wallet(session=session, user_id="alice", asset="USD")
    accounts = book | {"alice-usd": usd.id}
    with factory() as session:
        write_transfer(session, book)
        write_entry(session, "t1", book["bank"], "D")
        with pytest.raises(IntegrityError, match="ck_ledger_entries_match_transfer"):
            write_entry(session, "t1", accounts[account], "C", **change)


# ------------------------------------------------------------------ append-only journal


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transfers SET note = 'edited'",
        "DELETE FROM ledger_transfers",
        "UPDATE ledger_entries SET posted_minor = posted_minor",
        "DELETE FROM ledger_entries",
    ],
)
def test_journal_rows_cannot_be_updated_or_deleted(factory, book, statement):
    with unit_of_work(factory) as session:
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=book["bank"],
                credit_account_id=book["alice"],
                asset=HKD,
                amount_minor=100,
                note="as written",
            ),
        )
    with factory() as session, pytest.raises(DBAPIError, match="is append-only"):
        session.execute(text(statement))
    with factory() as session:
        assert session.scalars(select(Transfer.note)).all() == ["as written"]
    assert count(factory, ENTRIES) == 2


# ------------------------------------------------------------------ CHECKs, on both databases


@pytest.mark.parametrize(
    ("change", "constraint"),
    [
        ({"amount_minor": 0}, "ck_ledger_transfers_amount_positive"),
        ({"amount_minor": -5}, "ck_ledger_transfers_amount_positive"),
        ({"amount_minor": 2**128}, "ck_ledger_transfers_amount_positive"),
        ({"credit_account_id": "bank"}, "ck_ledger_transfers_distinct_accounts"),
        ({"kind": "gift"}, "ck_ledger_transfers_kind"),
        ({"kind": "post_pending"}, "ck_ledger_transfers_pending_link"),
        ({"kind": "posted", "timeout_at": "now"}, "ck_ledger_transfers_timeout_only_pending"),
    ],
)
def test_transfer_checks(factory, book, change, constraint):
    change = dict(change)
    if change.get("credit_account_id") == "bank":
        change["credit_account_id"] = book["bank"]
    if change.get("timeout_at") == "now":
        change["timeout_at"] = utcnow()
    with factory() as session:
        write_transfer(session, book, id="largest", amount_minor=2**128 - 1)  # the control
        with pytest.raises(IntegrityError, match=constraint):
            write_transfer(session, book, **change)


@pytest.mark.parametrize(
    ("change", "constraint"),
    [
        ({"posted_minor": -1}, "ck_ledger_entries_posted_non_negative"),
        ({"posted_minor": 0, "pending_minor": 0}, "ck_ledger_entries_moves_something"),
    ],
)
def test_entry_checks(factory, book, change, constraint):
    with factory() as session:
        write_transfer(session, book)
        write_entry(session, "t1", book["bank"], "D")  # the control
        with pytest.raises(IntegrityError, match=constraint):
            write_entry(session, "t1", book["alice"], "C", **change)


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ({"debits_pending": -1}, "ck_ledger_accounts_fields_non_negative"),
        ({"debits_posted": 1}, "ck_ledger_accounts_within_floor"),
        ({"credits_posted": 5, "debits_pending": 6}, "ck_ledger_accounts_within_floor"),
    ],
)
def test_account_checks(factory, book, values, constraint):
    with factory() as session:
        legal = {"credits_posted": 5, "debits_pending": 5}  # the control
        session.execute(ACCOUNTS.update().where(ACCOUNTS.c.id == book["alice"]).values(legal))
        with pytest.raises(IntegrityError, match=constraint):
            session.execute(ACCOUNTS.update().where(ACCOUNTS.c.id == book["alice"]).values(values))


def test_reserve_amount_check(factory):
    with factory() as session:
        session.add(
            PorAudit(
                audit_id="a1",
                root="0" * 64,
                assets=[],
                totals={},
                leaf_count=2,
                height=1,
                created_at=utcnow(),
                tree_dir="/nowhere",
            )
        )
        session.flush()
        reserve = {"audit_id": "a1", "asset": HKD, "as_of": date(2026, 12, 6)}
        session.add(PorReserve(amount_minor=0, source="bank", **reserve))  # the control
        session.flush()
        session.add(PorReserve(amount_minor=-1, source="cash", **reserve))
        with pytest.raises(IntegrityError, match="ck_por_reserves_amount_non_negative"):
            session.flush()


@on_sqlite
@pytest.mark.parametrize("amount", ["007", "1e3", "1.5", " 1", ""])
def test_sqlite_amounts_are_whole_numbers_written_plainly(factory, book, amount):
    """SQLite stores amounts as text: anything but ``str(int)``'s form is refused."""
    with factory() as session:
        write_transfer(session, book)
        with pytest.raises(IntegrityError, match="ck_ledger_transfers_amount_positive"):
            session.execute(
                text(
                    "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
                    " asset, amount_minor, batch_id, code, created_at)"
                    " SELECT 't2', kind, debit_account_id, credit_account_id, asset, :amount,"
                    " batch_id, code, created_at FROM ledger_transfers WHERE id = 't1'"
                ),
                {"amount": amount},
            )
