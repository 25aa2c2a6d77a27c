"""The group-commit batcher's linked groups and ``Once`` rows (merchant charges, issue #13), on
PostgreSQL and SQLite: in ONE batch, a job whose linked group the ledger refuses moves none of
its legs and gives its ``Once`` row back, a job whose ``Once`` row another job took first is
refused with its own refusal, and the other jobs of the batch go through."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from sqlalchemy import Table, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.db import utcnow
from strongroom.errors import Conflict, DomainError
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Transfer
from strongroom.movements.batcher import Batcher, Job, Once
from strongroom.movements.idempotency import Claim, Outcome
from strongroom.movements.models import IdempotencyKey

# any table with a primary key serves as a Once table; the keys' table needs no other rows
ONCE_TABLE = cast(Table, IdempotencyKey.__table__)


def once(name: str) -> Once:
    return Once(
        table=ONCE_TABLE,
        values={"scope": "once", "key": name, "request_hash": "-", "created_at": utcnow()},
        refusal=Conflict(f"{name} was used already", code="used_already"),
    )


def leg(debit: int, credit: int, amount: int, asset: str = "HKD") -> TransferSpec:
    return TransferSpec(
        id=f"t{uuid.uuid4().hex[:12]}",
        debit_account_id=debit,
        credit_account_id=credit,
        asset=asset,
        amount_minor=amount,
        linked=True,  # as a charge's legs come: the batcher closes each group itself
    )


@pytest.fixture
def accounts(factory: sessionmaker[Session]) -> dict[str, int]:
    with db.unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        found = {
            "bank": bank,
            "fee": ledger.operator_account(session=session, kind="fee", asset="HKD").id,
            "payer": ledger.user_wallet_id(session=session, user_id="u_payer", asset="HKD"),
            "shop": ledger.user_wallet_id(session=session, user_id="u_shop", asset="HKD"),
            "yuan": ledger.user_wallet_id(session=session, user_id="u_yuan", asset="CNY"),
        }
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=bank,
                credit_account_id=found["payer"],
                asset="HKD",
                amount_minor=10_00,
            ),
        )
    return found


def test_one_batch_keeps_each_job_s_outcome(factory, accounts):
    payer, shop, fee = accounts["payer"], accounts["shop"], accounts["fee"]
    charge = Outcome(id="ch_one", status="completed")
    jobs = [
        # the fee leg credits a CNY account: the group fails, its payment leg with it
        Job(leg(payer, shop, 3_00), None, linked=(leg(shop, accounts["yuan"], 2),), once=once("a")),
        Job(
            leg(payer, shop, 4_00),
            Claim("m1", "k1", "f1"),
            linked=(leg(shop, fee, 3),),
            outcome=charge,
            once=once("b"),
        ),
        Job(leg(payer, shop, 1_00), Claim("m1", "k2", "f2"), once=once("b")),  # b is taken
        Job(leg(payer, shop, 50_00), None, once=once("c")),  # too much: c is given back
        Job(leg(payer, shop, 2_00, asset="HKD"), None),
    ]
    batcher = Batcher(factory)
    try:
        batcher._process(jobs)
        answers: list[Any] = [job.future.exception() or job.future.result() for job in jobs]
    finally:
        batcher.close()
    assert isinstance(answers[0], DomainError) and answers[0].code == "asset_mismatch"
    assert answers[1] == charge  # the outcome the job chose, stored under its key
    assert isinstance(answers[2], DomainError) and answers[2].code == "used_already"
    assert isinstance(answers[3], DomainError) and answers[3].code == "insufficient_funds"
    assert isinstance(answers[4], Outcome) and answers[4].id == jobs[4].spec.id
    with factory() as session:
        balance = {
            name: ledger.balance(session=session, account_id=accounts[name]).total_minor
            for name in ("payer", "shop", "fee")
        }
        taken = set(
            session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.scope == "once"))
        )
        keys = set(session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.scope == "m1")))
        stored = session.scalars(
            select(IdempotencyKey.outcome_json).where(IdempotencyKey.key == "k1")
        ).one()
        moved = set(session.scalars(select(Transfer.id)))
    assert balance == {"payer": 4_00, "shop": 6_00 - 3, "fee": 3}
    assert taken == {"b"}  # a's and c's rows were given back with their refusals
    assert keys == {"k1"} and "ch_one" in stored
    assert jobs[0].spec.id not in moved and jobs[0].linked[0].id not in moved
