"""Worked examples for R-LEDGER-1..7, on PostgreSQL and on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work, utcnow
from strongroom.errors import DomainError, InsufficientFunds
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.ledger.models import Account, Entry, Transfer

HKD = "HKD"


def balances(factory: sessionmaker[Session], account_id: int) -> dict[str, int]:
    with factory() as session:
        a = session.get(Account, account_id)
        assert a is not None
        total = a.credits_posted - a.debits_posted
        return {
            "total": total,
            "available": total - a.debits_pending,
            "debits_pending": a.debits_pending,
            "credits_pending": a.credits_pending,
        }


@pytest.fixture
def book(factory: sessionmaker[Session]) -> dict[str, int]:
    """The omnibus bank account, Alice's and Bob's HKD wallets, the fee account."""
    with unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=HKD)
        fee = ledger.operator_account(session=session, kind="fee", asset=HKD)
        alice = ledger.user_wallet(session=session, user_id="alice", asset=HKD)
        bob = ledger.user_wallet(session=session, user_id="bob", asset=HKD)
        return {"bank": bank.id, "fee": fee.id, "alice": alice.id, "bob": bob.id}


def move(
    factory: sessionmaker[Session], debit: int, credit: int, amount: int, **extra: object
) -> str:
    with unit_of_work(factory) as session:
        return ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=debit,
                credit_account_id=credit,
                asset=HKD,
                amount_minor=amount,
                **extra,
            ),
        )  # type: ignore[arg-type]


def batch(factory: sessionmaker[Session], *specs: TransferSpec) -> list[ledger.TransferResult]:
    with unit_of_work(factory) as session:
        return ledger.create_transfers(session=session, specs=list(specs))


def assert_ledger_ok(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


# --------------------------------------------------------------------------- R-LEDGER-1


def test_topup_then_payment_with_fee_worked_example(factory, book):
    """A HK$100 top-up, then a HK$30 payment to Bob with a 0.8% fee taken from Bob."""
    move(factory, book["bank"], book["alice"], 100_00, code="topup")
    results = batch(
        factory,
        TransferSpec(
            debit_account_id=book["alice"],
            credit_account_id=book["bob"],
            asset=HKD,
            amount_minor=30_00,
            code="payment",
            linked=True,
        ),
        TransferSpec(
            debit_account_id=book["bob"],
            credit_account_id=book["fee"],
            asset=HKD,
            amount_minor=24,
            code="fee",
        ),
    )
    assert [r.status for r in results] == ["created", "created"]
    assert balances(factory, book["alice"])["total"] == 70_00
    assert balances(factory, book["bob"])["total"] == 29_76
    assert balances(factory, book["fee"])["total"] == 24
    assert balances(factory, book["bank"])["total"] == -100_00  # the operator's side of it
    with factory() as session:
        entries = session.scalars(select(Entry).order_by(Entry.id)).all()
    assert [(e.account_id, e.side, e.posted_minor, e.balance_after) for e in entries] == [
        (book["bank"], "D", 100_00, -100_00),
        (book["alice"], "C", 100_00, 100_00),
        (book["alice"], "D", 30_00, 70_00),
        (book["bob"], "C", 30_00, 30_00),
        (book["bob"], "D", 24, 29_76),
        (book["fee"], "C", 24, 24),
    ]
    assert_ledger_ok(factory)


def test_client_id_makes_submission_idempotent(factory, book):
    move(factory, book["bank"], book["alice"], 50_00)
    spec = TransferSpec(
        id="pay-1",
        debit_account_id=book["alice"],
        credit_account_id=book["bob"],
        asset=HKD,
        amount_minor=10_00,
    )
    assert [r.status for r in batch(factory, spec)] == ["created"]
    assert [r.status for r in batch(factory, spec)] == ["exists"]
    assert balances(factory, book["alice"])["total"] == 40_00
    other = TransferSpec(
        id="pay-1",
        debit_account_id=book["alice"],
        credit_account_id=book["bob"],
        asset=HKD,
        amount_minor=11_00,
    )
    (result,) = batch(factory, other)
    assert result.error is not None
    assert result.error.code == "transfer_exists_with_different_fields"
    assert balances(factory, book["alice"])["total"] == 40_00


def test_journal_is_immutable(factory, book):
    move(factory, book["bank"], book["alice"], 10_00)
    for statement in ("UPDATE ledger_transfers SET amount_minor = 1", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), unit_of_work(factory) as session:
            session.execute(text(statement))
    assert balances(factory, book["alice"])["total"] == 10_00


@pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
def test_database_refuses_an_unbalanced_transfer_on_postgres(factory, book):
    """The deferred constraint trigger: a transfer whose entries do not balance cannot commit."""
    refused = pytest.raises(IntegrityError, match="does not balance")
    with refused, unit_of_work(factory) as session:
        session.execute(
            text(
                "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
                " asset, amount_minor, batch_id, code, created_at) VALUES ('t1', 'posted', :d,"
                " :c, 'HKD', 100, 'b', 'x', now())"
            ),
            {"d": book["bank"], "c": book["alice"]},
        )
        session.execute(
            text(
                "INSERT INTO ledger_entries (transfer_id, account_id, asset, side, posted_minor,"
                " pending_minor, balance_after, created_at) VALUES"
                " ('t1', :d, 'HKD', 'D', 100, 0, -100, now()),"
                " ('t1', :c, 'HKD', 'C', 90, 0, 90, now())"
            ),
            {"d": book["bank"], "c": book["alice"]},
        )
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Transfer)) == 0


@pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
def test_database_refuses_negative_and_zero_amounts_on_postgres(factory, book):
    for amount in (0, -5):
        with pytest.raises(IntegrityError), unit_of_work(factory) as session:
            session.execute(
                text(
                    "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
                    " asset, amount_minor, batch_id, code, created_at) VALUES ('t', 'posted', :d,"
                    " :c, 'HKD', :a, 'b', 'x', now())"
                ),
                {"d": book["bank"], "c": book["alice"], "a": amount},
            )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount_minor": 0}, "invalid_amount"),
        ({"amount_minor": -100}, "invalid_amount"),
        ({"amount_minor": 2**128}, "invalid_amount"),
        ({"credit_account_id": 999_999}, "account_not_found"),
        ({"asset": "USD"}, "asset_mismatch"),
        ({"credit_account_id": None}, "validation_error"),
        ({"id": "has space"}, "invalid_id"),
    ],
)
def test_bad_transfers_are_refused_and_write_nothing(factory, book, change, code):
    move(factory, book["bank"], book["alice"], 10_00)
    fields = {
        "debit_account_id": book["alice"],
        "credit_account_id": book["bob"],
        "asset": HKD,
        "amount_minor": 1_00,
        **change,
    }
    (result,) = batch(factory, TransferSpec(**fields))  # type: ignore[arg-type]
    assert result.error is not None and result.error.code == code
    assert balances(factory, book["alice"])["total"] == 10_00
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Transfer)) == 1


def test_same_account_is_refused(factory, book):
    (result,) = batch(
        factory,
        TransferSpec(
            debit_account_id=book["bank"], credit_account_id=book["bank"], asset=HKD, amount_minor=1
        ),
    )
    assert result.error is not None and result.error.code == "same_account"


def test_wallet_never_goes_negative(factory, book):
    move(factory, book["bank"], book["alice"], 10_00)
    with pytest.raises(InsufficientFunds) as refused:
        move(factory, book["alice"], book["bob"], 10_01)
    assert refused.value.details["available_minor"] == "1000"
    move(factory, book["alice"], book["bob"], 10_00)
    assert balances(factory, book["alice"])["total"] == 0


def test_oversize_batch_is_refused(factory, book):
    spec = TransferSpec(
        debit_account_id=book["bank"], credit_account_id=book["alice"], asset=HKD, amount_minor=1
    )
    with pytest.raises(DomainError) as refused, unit_of_work(factory) as session:
        ledger.create_transfers(session=session, specs=[spec] * 8001)
    assert refused.value.code == "batch_too_large"


# --------------------------------------------------------------------------- R-LEDGER-2


def test_linked_group_fails_as_a_whole_and_others_go_through(factory, book):
    move(factory, book["bank"], book["alice"], 50_00)
    results = batch(
        factory,
        TransferSpec(
            debit_account_id=book["alice"],
            credit_account_id=book["bob"],
            asset=HKD,
            amount_minor=40_00,
            linked=True,
        ),
        TransferSpec(
            debit_account_id=book["alice"],
            credit_account_id=book["fee"],
            asset=HKD,
            amount_minor=20_00,
        ),  # 40 + 20 > 50: the whole group fails
        TransferSpec(
            debit_account_id=book["alice"],
            credit_account_id=book["bob"],
            asset=HKD,
            amount_minor=5_00,
        ),  # its own group: goes through
    )
    assert [r.status for r in results] == ["failed", "failed", "created"]
    assert results[0].error is not None and results[0].error.code == "linked_transfer_failed"
    assert results[1].error is not None and results[1].error.code == "insufficient_funds"
    assert balances(factory, book["alice"])["total"] == 45_00
    assert balances(factory, book["bob"])["total"] == 5_00
    assert_ledger_ok(factory)


def test_open_linked_chain_is_refused(factory, book):
    (result,) = batch(
        factory,
        TransferSpec(
            debit_account_id=book["bank"],
            credit_account_id=book["alice"],
            asset=HKD,
            amount_minor=1,
            linked=True,
        ),
    )
    assert result.error is not None and result.error.code == "linked_chain_open"
    assert balances(factory, book["alice"])["total"] == 0


def test_later_transfer_in_batch_sees_earlier_ones(factory, book):
    results = batch(
        factory,
        TransferSpec(
            debit_account_id=book["bank"],
            credit_account_id=book["alice"],
            asset=HKD,
            amount_minor=10_00,
        ),
        TransferSpec(
            debit_account_id=book["alice"],
            credit_account_id=book["bob"],
            asset=HKD,
            amount_minor=10_00,
        ),
    )
    assert [r.status for r in results] == ["created", "created"]
    assert balances(factory, book["bob"])["total"] == 10_00


# --------------------------------------------------------------------------- R-LEDGER-3


def test_pending_then_partial_post_returns_the_rest(factory, book):
    move(factory, book["bank"], book["alice"], 100_00)
    pending = move(factory, book["alice"], book["bob"], 60_00, kind=TransferKind.PENDING)
    assert balances(factory, book["alice"]) == {
        "total": 100_00,
        "available": 40_00,
        "debits_pending": 60_00,
        "credits_pending": 0,
    }
    assert balances(factory, book["bob"])["credits_pending"] == 60_00
    with pytest.raises(InsufficientFunds):
        move(factory, book["alice"], book["fee"], 40_01)
    with unit_of_work(factory) as session:
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                kind=TransferKind.POST_PENDING, pending_id=pending, amount_minor=25_00
            ),
        )
    assert balances(factory, book["alice"]) == {
        "total": 75_00,
        "available": 75_00,
        "debits_pending": 0,
        "credits_pending": 0,
    }
    assert balances(factory, book["bob"]) == {
        "total": 25_00,
        "available": 25_00,
        "debits_pending": 0,
        "credits_pending": 0,
    }
    with factory() as session:
        assert ledger.pending_state(session=session, transfer_id=pending) == "posted"
    assert_ledger_ok(factory)


def test_void_returns_everything_and_cannot_be_repeated(factory, book):
    move(factory, book["bank"], book["alice"], 20_00)
    pending = move(factory, book["alice"], book["bob"], 15_00, kind=TransferKind.PENDING)
    void = TransferSpec(kind=TransferKind.VOID_PENDING, pending_id=pending)
    assert [r.status for r in batch(factory, void)] == ["created"]
    assert balances(factory, book["alice"])["available"] == 20_00
    for again in (void, TransferSpec(kind=TransferKind.POST_PENDING, pending_id=pending)):
        (result,) = batch(factory, again)
        assert result.error is not None
        assert result.error.code == "pending_transfer_already_resolved"
    assert balances(factory, book["bob"])["total"] == 0


def test_post_more_than_pending_is_refused(factory, book):
    move(factory, book["bank"], book["alice"], 20_00)
    pending = move(factory, book["alice"], book["bob"], 15_00, kind=TransferKind.PENDING)
    (result,) = batch(
        factory,
        TransferSpec(kind=TransferKind.POST_PENDING, pending_id=pending, amount_minor=15_01),
    )
    assert result.error is not None and result.error.code == "exceeds_pending_amount"
    (result,) = batch(factory, TransferSpec(kind=TransferKind.POST_PENDING, pending_id="no-such"))
    assert result.error is not None and result.error.code == "pending_transfer_not_found"


def test_pending_with_timeout_voids_itself(factory, book):
    move(factory, book["bank"], book["alice"], 20_00)
    pending = move(
        factory, book["alice"], book["bob"], 15_00, kind=TransferKind.PENDING, timeout_s=30
    )
    with unit_of_work(factory) as session:
        assert ledger.expire_pending(session=session) == 0  # not due yet
    later = utcnow() + timedelta(seconds=31)
    (result,) = batch(factory, TransferSpec(kind=TransferKind.POST_PENDING, pending_id=pending))
    assert result.ok  # still inside its timeout: posting works
    pending2 = move(
        factory, book["alice"], book["bob"], 5_00, kind=TransferKind.PENDING, timeout_s=30
    )
    with unit_of_work(factory) as session:
        (late,) = ledger.create_transfers(
            session=session,
            now=later,
            specs=[TransferSpec(kind=TransferKind.POST_PENDING, pending_id=pending2)],
        )
    assert late.error is not None and late.error.code == "pending_transfer_expired"
    with unit_of_work(factory) as session:
        assert ledger.expire_pending(session=session, now=later) == 1
    with factory() as session:
        assert ledger.pending_state(session=session, transfer_id=pending2) == "expired"
    assert balances(factory, book["alice"]) == {
        "total": 5_00,
        "available": 5_00,
        "debits_pending": 0,
        "credits_pending": 0,
    }
    with unit_of_work(factory) as session:
        assert ledger.expire_pending(session=session, now=later) == 0
    assert_ledger_ok(factory)


# --------------------------------------------------------------------------- R-LEDGER-4/5


def test_balance_read_is_one_row(factory, book):
    """O(1) reads: the balance is the account row, not a sum over the journal."""
    for _ in range(5):
        move(factory, book["bank"], book["alice"], 1_00)
    with factory() as session:
        account = session.get(Account, book["alice"])
        assert account is not None
        assert account.credits_posted - account.debits_posted == 5_00


def test_check_reports_a_tampered_balance(factory, book, any_db):
    move(factory, book["bank"], book["alice"], 10_00)
    assert_ledger_ok(factory)
    with any_db.begin() as conn:  # what a buggy module writing balances would do
        conn.execute(
            Account.__table__.update()
            .where(Account.id == book["alice"])
            .values(credits_posted=99_00)
        )
    with factory() as session:
        report = reports.check(session=session)
    assert not report.ok
    assert any(f"account {book['alice']}" in p for p in report.problems)
    assert any("posted debits" in p for p in report.problems)


# --------------------------------------------------------------------------- R-LEDGER-7


def test_statement_pages_with_running_balance_and_csv(factory, book):
    move(factory, book["bank"], book["alice"], 100_00)
    for amount in (10_00, 20_00, 5_50):
        move(factory, book["alice"], book["bob"], amount, note="=cmd|' /C calc'!A0")
    with factory() as session:
        first = reports.statement(
            session=session, account_ids=[book["alice"]], cursor=None, limit=2
        )
        second = reports.statement(
            session=session, account_ids=[book["alice"]], cursor=first.next_cursor, limit=2
        )
        csv_text = "".join(
            reports.statement_csv(
                session=session, account_ids=[book["alice"]], scales={HKD: 2}, max_rows=100
            )
        )
    assert [(line.signed_minor, line.balance_after) for line in first.lines] == [
        (-5_50, 64_50),
        (-20_00, 70_00),
    ]
    assert [(line.signed_minor, line.balance_after) for line in second.lines] == [
        (-10_00, 90_00),
        (100_00, 100_00),
    ]
    assert second.next_cursor is None
    rows = csv_text.strip().splitlines()
    assert rows[0].startswith("entry_id,created_at,transfer_id")
    assert [row.split(",")[6:9] for row in rows[1:]] == [
        ["100.00", "0.00", "100.00"],
        ["-10.00", "0.00", "90.00"],
        ["-20.00", "0.00", "70.00"],
        ["-5.50", "0.00", "64.50"],
    ]
    assert "'=cmd" in rows[2]  # a spreadsheet formula is neutralised


def test_statement_refuses_a_forged_cursor(factory, book):
    with pytest.raises(DomainError) as refused, factory() as session:
        reports.statement(session=session, account_ids=[book["alice"]], cursor="abc", limit=5)
    assert refused.value.code == "invalid_cursor"


def test_large_batch_is_written_in_bulk_and_balances(factory, book):
    """40 transfers in one batch (the COPY path on PostgreSQL) with exact running balances."""
    specs = [
        TransferSpec(
            debit_account_id=book["bank"],
            credit_account_id=book["alice"],
            asset=HKD,
            amount_minor=1_00,
            note=f"n{i}" if i % 2 else None,
        )
        for i in range(40)
    ]
    results = batch(factory, *specs)
    assert all(r.status == "created" for r in results)
    with factory() as session:
        page = reports.statement(
            session=session, account_ids=[book["alice"]], cursor=None, limit=50
        )
    assert [line.balance_after for line in page.lines] == [i * 1_00 for i in range(40, 0, -1)]
    assert page.lines[0].note == "n39" and page.lines[1].note is None
    assert balances(factory, book["bank"])["total"] == -40_00
    assert_ledger_ok(factory)
