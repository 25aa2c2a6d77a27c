"""The group-commit batcher: many requests in one transaction, each with its own outcome."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.errors import DomainError
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Account, Transfer
from strongroom.movements.batcher import Batcher, Job
from strongroom.movements.idempotency import Claim, Outcome
from strongroom.movements.lane import Party
from strongroom.movements.models import IdempotencyKey
from strongroom.notify import outbox
from strongroom.notify.models import OutboxEmail
from strongroom.payments import receipts
from strongroom.settings import get_settings


@pytest.fixture
def wallets(factory: sessionmaker[Session]) -> list[int]:
    with db.unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        ids = [bank] + [
            ledger.user_wallet_id(session=session, user_id=f"u{i}", asset="HKD") for i in range(3)
        ]
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=bank, credit_account_id=ids[1], asset="HKD", amount_minor=10_00
            ),
        )
    return ids


def spec(debit: int, credit: int, amount: int) -> TransferSpec:
    return TransferSpec(
        debit_account_id=debit, credit_account_id=credit, asset="HKD", amount_minor=amount
    )


def test_one_batch_mixed_outcomes_and_duplicate_keys(factory, wallets):
    _, a, b, c = wallets
    batcher = Batcher(factory)
    try:
        jobs = [
            Job(spec(a, b, 3_00), Claim("u1", "k1", "f1")),
            Job(spec(a, c, 50_00), Claim("u1", "k2", "f2")),  # refused: too much
            Job(spec(a, c, 2_00), Claim("u1", "k3", "f3")),
            Job(spec(a, c, 2_00), Claim("u1", "k3", "f3")),  # same key in the batch
            Job(spec(a, b, 1_00), None),
        ]
        batcher._process(jobs)
        outcomes = [job.future.exception() or job.future.result() for job in jobs]
    finally:
        batcher.close()
    assert isinstance(outcomes[1], DomainError) and outcomes[1].code == "insufficient_funds"
    assert outcomes[2] == outcomes[3]  # the duplicate got the owner's stored result
    assert all(
        isinstance(o, Outcome) and o.status == "completed" for i, o in enumerate(outcomes) if i != 1
    )
    with factory() as session:
        balances = {aid: session.get(Account, aid) for aid in (a, b, c)}
        keys = set(session.scalars(select(IdempotencyKey.key)))
        transfers = session.scalar(select(func.count()).select_from(Transfer))
    assert {aid: acc.credits_posted - acc.debits_posted for aid, acc in balances.items()} == {
        a: 4_00,
        b: 4_00,
        c: 2_00,
    }
    assert keys == {"k1", "k3"}  # the refused request's key is free for a retry
    assert transfers == 4


def test_a_refused_transfer_of_a_batch_leaves_no_receipt(factory, wallets):
    """Receipts of the batch are written with it (on PostgreSQL before the accounts are
    locked): the refused transfer's are taken back in the same transaction, the others stay,
    two per transfer, each naming its transfer."""
    _, a, b, c = wallets
    hkd = get_settings().asset_registry()
    alice = Party(id="u1", email="alice@example.com", name="Alice Chan", anti_phishing_code=None)
    bob = Party(id="u2", email="bob@example.com", name="Bob Lee", anti_phishing_code="B0B")

    def job(credit: int, amount: str, key: str) -> Job:
        money = hkd.money(amount, "HKD")
        writer = receipts.receipts(
            sender=alice, recipient=bob, to="bob@example.com", amount=money, note=None
        )
        return Job(spec(a, credit, money.amount_minor), Claim("u1", key, key), on_commit=writer)

    jobs = [job(b, "3.00", "k1"), job(c, "50.00", "k2"), job(c, "2.00", "k3")]
    batcher = Batcher(factory)
    try:
        batcher._process(jobs)
        outcomes = [job.future.exception() or job.future.result() for job in jobs]
    finally:
        batcher.close()
    assert isinstance(outcomes[1], DomainError) and outcomes[1].code == "insufficient_funds"
    made = {o.id for i, o in enumerate(outcomes) if i != 1 and isinstance(o, Outcome)}
    with factory() as session:
        rows = session.scalars(select(OutboxEmail)).all()
        emails = [(row.user_id, outbox.content(row).text) for row in rows]  # as they will be sent
    assert sorted(user for user, _ in emails) == ["u1", "u1", "u2", "u2"]
    assert {t for t in made for _, text in emails if t in text} == made
    assert all(sum(t in text for t in made) == 1 for _, text in emails)
    assert not any("50.00" in text for _, text in emails)  # nothing of the refused one


def test_replay_with_another_body_is_refused(factory, wallets):
    _, a, b, _ = wallets
    batcher = Batcher(factory)
    try:
        assert batcher.submit(spec(a, b, 1_00), Claim("u1", "k", "f1")).status == "completed"
        with pytest.raises(DomainError) as refused:
            batcher.submit(spec(a, b, 2_00), Claim("u1", "k", "other"))
    finally:
        batcher.close()
    assert refused.value.code == "idempotency_key_reused"


def test_concurrent_submitters_all_get_their_own_results(factory, wallets):
    bank, a, b, c = wallets
    batcher = Batcher(factory, max_batch=64)
    results: list[object] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        try:
            outcome: object = batcher.submit(spec(bank, (a, b, c)[i % 3], 1), None)
        except DomainError as error:
            outcome = error
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(60)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        batcher.close()
    assert len(results) == 60 and all(isinstance(r, Outcome) for r in results)
    assert len({r.id for r in results if isinstance(r, Outcome)}) == 60
    with factory() as session:
        bank_account = session.get(Account, bank)
        assert bank_account is not None
        assert bank_account.debits_posted == 10_00 + 60


@pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
def test_two_batching_threads_pass_the_baton_on_even_when_a_batch_fails(factory, wallets, any_db):
    """Two threads, one gathering at a time (the baton): concurrent submitters each get their
    own result, and a batch that fails before it locks anything (a key too long for its
    column: a database error in the claim) is retried job by job without holding the other
    thread back; nothing of the failed jobs is written."""
    bank, a, b, c = wallets
    batcher = Batcher(factory, max_batch=16, threads=2)
    results: dict[int, object] = {}
    lock = threading.Lock()

    def send(i: int) -> None:
        key = "x" * 200 if i % 10 == 0 else f"k{i}"  # the column holds 128
        try:
            outcome: object = batcher.submit(spec(bank, (a, b, c)[i % 3], 1), Claim("u", key, key))
        except Exception as error:
            outcome = error
        with lock:
            results[i] = outcome

    threads = [threading.Thread(target=send, args=(i,)) for i in range(80)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "a submitter never got an answer"
    finally:
        batcher.close()
    assert batcher.closed
    failed = {i for i, r in results.items() if not isinstance(r, Outcome)}
    assert failed == set(range(0, 80, 10))
    assert all(isinstance(results[i], DBAPIError) for i in failed)
    with factory() as session:
        bank_account = session.get_one(Account, bank)
        keys = set(session.scalars(select(IdempotencyKey.key)))
    assert bank_account.debits_posted == 10_00 + 72
    assert keys == {f"k{i}" for i in range(80) if i % 10}


def test_an_app_started_twice_moves_money_both_times(pg_db):
    """A second lifespan of the same app (a second TestClient, Schemathesis' runs) gets a live
    batcher, not the one the first lifespan closed."""
    from fastapi.testclient import TestClient

    from strongroom.app import create_app
    from tests.api.conftest import make_settings, signup

    app = create_app(make_settings(pg_db), pg_db)
    for _ in range(2):
        with TestClient(app) as client:
            signup(client, "Twice").topup("1.00")
    assert app.state.batcher.closed
