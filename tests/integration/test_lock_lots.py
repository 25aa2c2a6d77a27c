"""Spent locked money consumes its lots (R-TN-2, issue #11): a posted debit that uses locked
money (the part of the amount above what was free) consumes the lots it used, earliest unlock
first, in its own transaction, so a later credit to the same wallet is not locked again by them.
Ledger level, on both databases; and a Hypothesis property over credits, locked debits, pending
debits and time."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.ledger.models import Lock, LockUse

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=db.utcnow().tzinfo)
HOUR = 3600
_owners = itertools.count()


def _accounts(session: Session, asset: str = "BTC") -> tuple[int, int, int]:
    """(bank omnibus, a fresh user's wallet, a merchant-like operator account)."""
    bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=asset).id
    shop = ledger.operator_account(session=session, kind="merchant_settlement", asset=asset).id
    wallet = ledger.user_wallet_id(session=session, user_id=f"u{next(_owners)}", asset=asset)
    return bank, wallet, shop


def _move(
    session: Session,
    debit: int,
    credit: int,
    amount: int,
    *,
    at: datetime,
    lock_s: int | None = None,
    kind: TransferKind = TransferKind.POSTED,
) -> str:
    return ledger.transfer(
        session=session,
        spec=TransferSpec(
            kind=kind,
            debit_account_id=debit,
            credit_account_id=credit,
            asset="BTC",
            amount_minor=amount,
            lock_s=lock_s,
            timeout_s=600 if kind is TransferKind.PENDING else None,
        ),
        now=at,
    )


def _left(session: Session, account_id: int, now: datetime) -> list[tuple[int, datetime]]:
    """What is left of the account's live lots, earliest first."""
    rows = session.execute(
        select(Lock.amount_minor, Lock.consumed_minor, Lock.unlocks_at)
        .where(Lock.account_id == account_id, Lock.unlocks_at > now)
        .order_by(Lock.unlocks_at, Lock.id)
    )
    return [
        (r.amount_minor - r.consumed_minor, r.unlocks_at)
        for r in rows
        if r.amount_minor > r.consumed_minor
    ]


def _checked(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def test_a_merchant_like_debit_of_locked_money_consumes_the_soonest_lots(
    factory: sessionmaker[Session],
) -> None:
    with db.unit_of_work(factory) as session:
        bank, wallet, shop = _accounts(session)
        _move(session, bank, wallet, 300, at=T0, lock_s=24 * HOUR)  # lot A, unlocks T0+24h
        _move(session, bank, wallet, 500, at=T0, lock_s=72 * HOUR)  # lot B, unlocks T0+72h
        _move(session, bank, wallet, 200, at=T0)  # free
        paid = _move(session, wallet, shop, 600, at=T0 + timedelta(hours=1))
    at = T0 + timedelta(hours=2)
    with factory() as session:
        # 200 free first, then all of A (300) and 100 of B
        assert _left(session, wallet, at) == [(400, T0 + timedelta(hours=72))]
        uses = session.execute(
            select(LockUse.amount_minor, LockUse.unlocks_at).where(LockUse.transfer_id == paid)
        ).all()
        assert sorted((u.amount_minor, u.unlocks_at) for u in uses) == [
            (100, T0 + timedelta(hours=72)),
            (300, T0 + timedelta(hours=24)),
        ]
    with db.unit_of_work(factory) as session:  # a free credit stays free (the bug: 800 locked)
        _move(session, bank, wallet, 1000, at=at)
    with factory() as session:
        held = ledger.balance(session=session, account_id=wallet, now=at)
        assert (held.total_minor, held.locked_minor, held.available_minor) == (1400, 400, 1000)
    _checked(factory)


def test_free_money_is_spent_first_and_a_debit_within_it_consumes_nothing(
    factory: sessionmaker[Session],
) -> None:
    with db.unit_of_work(factory) as session:
        bank, wallet, shop = _accounts(session)
        _move(session, bank, wallet, 100, at=T0, lock_s=HOUR)
        _move(session, bank, wallet, 50, at=T0)
        _move(session, wallet, shop, 50, at=T0)
        assert session.scalar(select(LockUse.id)) is None
        _move(session, wallet, shop, 30, at=T0)  # 30 of the lot
        _move(session, bank, wallet, 80, at=T0)
        held = ledger.balance(session=session, account_id=wallet, now=T0)
        assert (held.total_minor, held.locked_minor) == (150, 70)
        # after the unlock, the lot is free; a later debit touches no lot
        after = T0 + timedelta(hours=2)
        _move(session, wallet, shop, 150, at=after)
        assert ledger.balance(session=session, account_id=wallet, now=after).total_minor == 0
        assert _left(session, wallet, T0) == [(70, T0 + timedelta(hours=1))]


def test_a_pending_debit_consumes_when_posted_never_when_voided(
    factory: sessionmaker[Session],
) -> None:
    with db.unit_of_work(factory) as session:
        bank, wallet, shop = _accounts(session)
        _move(session, bank, wallet, 100, at=T0, lock_s=HOUR)
        voided = _move(session, wallet, shop, 60, at=T0, kind=TransferKind.PENDING)
        ledger.transfer(
            session=session,
            spec=TransferSpec(kind=TransferKind.VOID_PENDING, pending_id=voided),
            now=T0,
        )
        assert _left(session, wallet, T0) == [(100, T0 + timedelta(hours=1))]
        posted = _move(session, wallet, shop, 60, at=T0, kind=TransferKind.PENDING)
        assert ledger.balance(session=session, account_id=wallet, now=T0).locked_minor == 40
        ledger.transfer(
            session=session,
            spec=TransferSpec(kind=TransferKind.POST_PENDING, pending_id=posted),
            now=T0,
        )
        assert _left(session, wallet, T0) == [(40, T0 + timedelta(hours=1))]
        _move(session, bank, wallet, 500, at=T0)
        assert ledger.balance(session=session, account_id=wallet, now=T0).locked_minor == 40
    _checked(factory)


def test_a_locked_credit_and_a_debit_in_one_batch(factory: sessionmaker[Session]) -> None:
    """A lot written by a credit of the batch is consumed by a later debit of the batch only."""
    with db.unit_of_work(factory) as session:
        bank, wallet, shop = _accounts(session)
        results = ledger.create_transfers(
            session=session,
            specs=[
                TransferSpec(
                    debit_account_id=bank,
                    credit_account_id=wallet,
                    asset="BTC",
                    amount_minor=100,
                    lock_s=HOUR,
                ),
                TransferSpec(
                    debit_account_id=wallet, credit_account_id=shop, asset="BTC", amount_minor=70
                ),
            ],
            now=T0,
        )
        assert all(r.ok for r in results)
        assert _left(session, wallet, T0) == [(30, T0 + timedelta(hours=1))]
        assert ledger.balance(session=session, account_id=wallet, now=T0).locked_minor == 30


# --------------------------------------------------------------------------- property

STEP = st.one_of(
    st.tuples(st.just("credit"), st.integers(1, 500), st.sampled_from([None, 1, 5, 24])),
    st.tuples(st.just("debit"), st.integers(1, 600), st.none()),
    st.tuples(st.just("pending"), st.integers(1, 300), st.booleans()),
    st.tuples(st.just("time"), st.integers(1, 12), st.none()),
)


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path_factory.mktemp('lots')}/lots.db")
    db.upgrade(engine)
    return engine


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=14))
def test_locked_never_exceeds_what_is_held_and_the_lots_sum_to_it(
    sqlite_engine: Engine, steps: list[tuple[str, int, object]]
) -> None:
    factory = db.make_session_factory(sqlite_engine)
    now = T0
    with db.unit_of_work(factory) as session:
        bank, wallet, shop = _accounts(session)
        for what, amount, extra in steps:
            held = ledger.balance(session=session, account_id=wallet, now=now)
            if what == "credit":
                hours = extra if isinstance(extra, int) else None
                _move(session, bank, wallet, amount, at=now, lock_s=hours and hours * HOUR)
            elif what == "debit":  # a merchant-like debit: locked money may be spent
                amount = min(amount, held.total_minor - held.pending_minor)
                if amount > 0:
                    _move(session, wallet, shop, amount, at=now)
            elif what == "pending":
                amount = min(amount, held.total_minor - held.pending_minor)
                if amount > 0:
                    pending = _move(
                        session, wallet, shop, amount, at=now, kind=TransferKind.PENDING
                    )
                    kind = TransferKind.POST_PENDING if extra else TransferKind.VOID_PENDING
                    ledger.transfer(
                        session=session,
                        spec=TransferSpec(kind=kind, pending_id=pending),
                        now=now,
                    )
            else:
                now += timedelta(hours=amount)
            held = ledger.balance(session=session, account_id=wallet, now=now)
            assert 0 <= held.locked_minor <= held.total_minor - held.pending_minor
            assert sum(left for left, _ in _left(session, wallet, now)) == held.locked_minor
