"""R-LEDGER-6 on real PostgreSQL: 16 threads x 500 random transfers among 50 accounts, once
spread out and once with every transfer touching one hot account. No lost update, no negative
wallet, totals preserved, no error but ``insufficient_funds``, no deadlock surfaced."""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.errors import DomainError
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.ledger.models import Account

THREADS = 16
PER_THREAD = int(os.environ.get("STRONGROOM_CONCURRENCY_PER_THREAD", "500"))
ACCOUNTS = 50
START_MINOR = 1_000


def _setup(engine: Engine) -> list[int]:
    factory = db.make_session_factory(engine)
    with db.unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD")
        ids = [
            ledger.user_wallet(session=session, user_id=f"user{i}", asset="HKD").id
            for i in range(ACCOUNTS)
        ]
        ledger.create_transfers(
            session=session,
            specs=[
                TransferSpec(
                    debit_account_id=bank.id,
                    credit_account_id=account_id,
                    asset="HKD",
                    amount_minor=START_MINOR,
                )
                for account_id in ids
            ],
        )
    return ids


def _hammer(engine: Engine, ids: list[int], hot: int | None) -> tuple[Counter[str], int]:
    factory = db.make_session_factory(engine)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(PER_THREAD):
            debit, credit = rng.sample(ids, 2)
            if hot is not None:
                debit, credit = (hot, credit) if rng.random() < 0.5 else (debit, hot)
                if debit == credit:
                    continue
            spec = _random_spec(rng, debit, credit)
            try:
                with db.unit_of_work(factory) as session:
                    outcome = _submit(session, spec)
            except DomainError as error:
                outcome = error.code
            except Exception as error:  # anything else is a failure of the test
                outcome = f"unexpected:{type(error).__name__}:{error}"
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, sum(outcomes.values())


def _random_spec(rng: random.Random, debit: int, credit: int) -> TransferSpec:
    amount = rng.randint(1, 400)
    kind = TransferKind.PENDING if rng.random() < 0.1 else TransferKind.POSTED
    return TransferSpec(
        kind=kind,
        debit_account_id=debit,
        credit_account_id=credit,
        asset="HKD",
        amount_minor=amount,
        timeout_s=60 if kind is TransferKind.PENDING else None,
    )


def _submit(session, spec: TransferSpec) -> str:  # type: ignore[no-untyped-def]
    transfer_id = ledger.transfer(session=session, spec=spec)
    if spec.kind is TransferKind.PENDING:  # settle half of them at once, void the rest
        resolution = (
            TransferKind.POST_PENDING if (spec.amount_minor or 0) % 2 else TransferKind.VOID_PENDING
        )
        ledger.transfer(session=session, spec=TransferSpec(kind=resolution, pending_id=transfer_id))
    return "ok"


def _verify(engine: Engine, ids: list[int], outcomes: Counter[str]) -> None:
    unexpected = {k: v for k, v in outcomes.items() if k not in ("ok", "insufficient_funds")}
    assert not unexpected, unexpected
    assert outcomes["ok"] > 0
    factory = db.make_session_factory(engine)
    with factory() as session:
        wallets = session.execute(select(Account).where(Account.id.in_(ids))).scalars().all()
        report = reports.check(session=session)
    assert report.ok, report.problems
    totals = [w.credits_posted - w.debits_posted for w in wallets]
    assert min(totals) >= 0, "a wallet went negative"
    assert all(w.debits_pending == 0 for w in wallets)
    assert sum(totals) == ACCOUNTS * START_MINOR, "money was created or destroyed"


@pytest.mark.parametrize("hot_account", [False, True], ids=["spread", "hot"])
def test_concurrent_transfers_keep_every_invariant(pg_db: Engine, hot_account: bool) -> None:
    ids = _setup(pg_db)
    outcomes, count = _hammer(pg_db, ids, ids[0] if hot_account else None)
    assert count > THREADS * PER_THREAD * 0.9
    _verify(pg_db, ids, outcomes)


def test_concurrent_batches_in_opposite_orders_do_not_deadlock(pg_db: Engine) -> None:
    """Two batches that touch the same accounts in opposite orders: locks are taken in id
    order, so neither waits on the other in a cycle."""
    ids = _setup(pg_db)
    factory = db.make_session_factory(pg_db)
    errors: list[BaseException] = []

    def run(order: list[int]) -> None:
        try:
            for _ in range(30):
                specs = [
                    TransferSpec(
                        debit_account_id=a, credit_account_id=b, asset="HKD", amount_minor=1
                    )
                    for a, b in itertools.pairwise(order)
                ]
                with db.unit_of_work(factory) as session:
                    ledger.create_transfers(session=session, specs=specs)
        except BaseException as error:
            errors.append(error)

    forward, backward = ids[:20], list(reversed(ids[:20]))
    threads = [
        threading.Thread(target=run, args=(order,))
        for order in (forward, backward, forward, backward)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _verify(pg_db, ids, Counter({"ok": 1}))
