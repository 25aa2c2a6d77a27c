"""Large batches (issue #14): on PostgreSQL a batch of new transfers writes its transfer rows
before it locks its accounts, in a savepoint that is rolled back when the ledger refuses any of
them. Whatever path a batch takes, the outcomes are the ledger's: refused transfers and their
linked groups leave nothing in the journal, replays report ``exists``, concurrent batches over
the same wallets keep every balance exact and none negative, and the ledger check passes."""

from __future__ import annotations

import random
import threading
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Account, Entry, Transfer

HKD = "HKD"
WALLETS = 30
START_MINOR = 1_000
BATCH = 40  # large enough for the early write (writer.COPY_MIN_ROWS)


def _wallets(factory: sessionmaker[Session]) -> list[int]:
    """``WALLETS`` user wallets (never negative) funded with ``START_MINOR`` each."""
    with db.unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=HKD).id
        ids = [
            ledger.user_wallet(session=session, user_id=f"u{i}", asset=HKD).id
            for i in range(WALLETS)
        ]
        results = ledger.create_transfers(
            session=session,
            specs=[
                TransferSpec(
                    debit_account_id=bank, credit_account_id=i, asset=HKD, amount_minor=START_MINOR
                )
                for i in ids
            ],
        )
    assert all(r.status == "created" for r in results)
    return ids


def _totals(factory: sessionmaker[Session], ids: list[int]) -> dict[int, int]:
    with factory() as session:
        rows = session.execute(
            select(Account.id, Account.credits_posted, Account.debits_posted).where(
                Account.id.in_(ids)
            )
        )
        return {row.id: row.credits_posted - row.debits_posted for row in rows}


def _in_journal(factory: sessionmaker[Session], transfer_ids: list[str]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).where(Transfer.id.in_(transfer_ids))) or 0)


def _spec(debit: int, credit: int, amount: int, **more: object) -> TransferSpec:
    return TransferSpec(
        debit_account_id=debit,
        credit_account_id=credit,
        asset=HKD,
        amount_minor=amount,
        code="batch-test",
        **more,  # type: ignore[arg-type]
    )


def test_a_linked_group_with_a_refused_member_writes_nothing(
    factory: sessionmaker[Session],
) -> None:
    ids = _wallets(factory)
    specs = [_spec(ids[n % WALLETS], ids[(n + 1) % WALLETS], 10, id=f"b-{n}") for n in range(BATCH)]
    # 10 is linked to 11, which asks for more than its wallet holds: both are refused
    specs[10] = _spec(ids[10], ids[11], 10, id="b-10", linked=True)
    specs[11] = _spec(ids[12], ids[13], START_MINOR * 5, id="b-11")
    with db.unit_of_work(factory) as session:
        results = ledger.create_transfers(session=session, specs=specs)
    codes = {r.index: r.error.code for r in results if r.error is not None}
    assert codes == {10: "linked_transfer_failed", 11: "insufficient_funds"}
    assert _in_journal(factory, ["b-10", "b-11"]) == 0
    assert _in_journal(factory, [f"b-{n}" for n in range(BATCH)]) == BATCH - 2
    totals = _totals(factory, ids)
    assert sum(totals.values()) == WALLETS * START_MINOR
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Entry)) == 2 * (WALLETS + BATCH - 2)
        report = reports.check(session=session)
    assert report.ok, report.problems


def test_a_large_batch_naming_a_missing_account_refuses_only_that_transfer(
    factory: sessionmaker[Session],
) -> None:
    """On PostgreSQL the database refuses the early write of such a batch (migration 0043 checks
    the accounts of a statement of 128 transfers or more as they are written): the batch falls
    back to the locked path, and each transfer gets the ledger's own outcome, as on SQLite."""
    ids = _wallets(factory)
    with db.unit_of_work(factory) as session:
        usd = ledger.user_wallet(session=session, user_id="usd-holder", asset="USD").id
    size = 150
    specs = [_spec(ids[n % WALLETS], ids[(n + 3) % WALLETS], 5, id=f"m-{n}") for n in range(size)]
    specs[4] = _spec(ids[4], 10**12, 5, id="m-4")  # no such account
    specs[9] = _spec(ids[9], usd, 5, id="m-9")  # an account of another asset
    with db.unit_of_work(factory) as session:
        results = ledger.create_transfers(session=session, specs=specs)
    codes = {r.index: r.error.code for r in results if r.error is not None}
    assert codes == {4: "account_not_found", 9: "asset_mismatch"}
    assert _in_journal(factory, ["m-4", "m-9"]) == 0
    assert _in_journal(factory, [f"m-{n}" for n in range(size)]) == size - 2
    assert sum(_totals(factory, ids).values()) == WALLETS * START_MINOR
    with factory() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def test_a_replayed_batch_reports_exists_and_moves_nothing(
    factory: sessionmaker[Session],
) -> None:
    ids = _wallets(factory)
    specs = [_spec(ids[n % WALLETS], ids[(n + 7) % WALLETS], 3, id=f"r-{n}") for n in range(BATCH)]
    with db.unit_of_work(factory) as session:
        first = ledger.create_transfers(session=session, specs=specs)
    assert Counter(r.status for r in first) == {"created": BATCH}
    before = _totals(factory, ids)
    changed = list(specs)
    changed[5] = _spec(ids[5], ids[12], 4, id="r-5")  # same id, another amount
    with db.unit_of_work(factory) as session:
        again = ledger.create_transfers(session=session, specs=changed)
    assert [r.status for r in again] == ["exists"] * 5 + ["failed"] + ["exists"] * (BATCH - 6)
    assert again[5].error is not None
    assert again[5].error.code == "transfer_exists_with_different_fields"
    assert _totals(factory, ids) == before
    assert _in_journal(factory, [f"r-{n}" for n in range(BATCH)]) == BATCH


def test_concurrent_large_batches_over_the_same_wallets_stay_exact(pg_db: Engine) -> None:
    """8 threads send batches of random transfers (some overdraw, some linked in pairs) over
    the same 30 wallets at once: every acknowledged transfer is in the journal, no other is,
    no wallet is negative, no money is made or lost, the ledger check passes."""
    factory = db.make_session_factory(pg_db)
    ids = _wallets(factory)
    created: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        try:
            for turn in range(6):
                specs = []
                for n in range(BATCH):
                    debit, credit = rng.sample(ids, 2)
                    specs.append(
                        _spec(
                            debit,
                            credit,
                            rng.randint(1, 400),
                            id=f"c-{seed}-{turn}-{n}",
                            linked=n % 10 == 3,
                        )
                    )
                with db.unit_of_work(factory) as session:
                    results = ledger.create_transfers(session=session, specs=specs)
                with lock:
                    created.extend(r.id for r in results if r.status == "created")
                    refused.extend(r.id for r in results if r.status == "failed")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert created and refused  # both paths ran: some batches were refused in part
    assert _in_journal(factory, created) == len(created)
    assert _in_journal(factory, refused) == 0
    totals = _totals(factory, ids)
    assert min(totals.values()) >= 0, "a wallet went negative"
    assert sum(totals.values()) == WALLETS * START_MINOR, "money was created or destroyed"
    with factory() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems
