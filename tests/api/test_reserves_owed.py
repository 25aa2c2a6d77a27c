"""What the proof of reserves counts as owed to users (issue #12): a user wallet's posted total,
so a withdrawal the payout connector has not paid is still owed, plus the open gifts' remaining
escrow, attributed to each gift's sender, so the liabilities do not shrink while a gift is
open. The snapshot's totals equal the ledger's user wallets plus the gift escrow, and the
sender's proof verifies."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.gifts import service as gifts
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.snapshot import Snapshot, SnapshotError, from_ledger
from strongroom_verify import por_v1
from tests.api.conftest import make_settings, signup
from tests.api.test_withdrawals import link, primary, sweep, withdraw

SECRET = bytes(range(32))


def snapshot_now(engine: Engine) -> Snapshot:
    scales = {a.code: a.scale for a in make_settings(engine).asset_registry().all()}
    with db.make_session_factory(engine)() as session:
        try:
            return from_ledger(session=session, scales=scales)
        finally:
            session.rollback()


def hkd_of(snapshot: Snapshot) -> dict[str, int]:
    column = [a.code for a in snapshot.assets].index("HKD")
    return {user: row[column] for user, row in snapshot.as_mapping().items() if row[column]}


def ledger_hkd(engine: Engine, user_ids: list[str]) -> tuple[int, int]:
    """The ledger's own figures: the users' wallet totals, and the gift escrow's total."""
    with db.make_session_factory(engine)() as session:
        wallets = sum(
            ledger.balance(
                session=session,
                account_id=ledger.user_wallet(session=session, user_id=user, asset="HKD").id,
            ).total_minor
            for user in user_ids
        )
        return wallets, gifts.escrow_totals(session=session).get("HKD", 0)


def test_a_half_claimed_gift_and_a_pending_withdrawal_are_still_owed(
    client: TestClient, app: FastAPI, pg_db: Engine, tmp_path: Path
) -> None:
    alice = primary(pg_db, signup(client, "Alice"))
    bob = signup(client, "Bob")
    alice.topup("100.00")
    sent = alice.post("/v1/gifts", {"asset": "HKD", "amount": "40.00", "shares": 2})
    assert sent.status_code == 201, sent.text
    claimed = bob.post("/v1/gifts/claim", {"claim_code": sent.json()["claim_code"]}, key=None)
    assert claimed.json()["amount"] == "20.00"
    made = withdraw(alice, link(alice, "12345671"), "10.00")
    assert made.status_code == 201, made.text
    assert (alice.balance()["total"], alice.balance()["available"]) == ("60.00", "50.00")

    taken = snapshot_now(pg_db)
    # Alice: 60.00 in her wallet (the pending 10.00 withdrawal included) + 20.00 in escrow.
    assert hkd_of(taken) == {alice.user_id: 80_00, bob.user_id: 20_00}
    wallets, escrow = ledger_hkd(pg_db, [alice.user_id, bob.user_id])
    assert (wallets, escrow) == (80_00, 20_00)
    hkd = [a.code for a in taken.assets].index("HKD")
    assert taken.totals[hkd] == wallets + escrow == 100_00  # every dollar topped up is owed

    build(taken, tmp_path / "audit", secret=SECRET, options=BuildOptions(workers=1))
    proof = ProofServer(tmp_path / "audit").proof(alice.user_id)
    assert proof["balances"]["HKD"] == "80.00"
    assert por_v1.verify_proof(proof).valid

    assert sweep(app).paid == 1  # the payout is posted: now the 10.00 has left
    assert hkd_of(snapshot_now(pg_db)) == {alice.user_id: 70_00, bob.user_id: 20_00}


def test_escrow_the_open_gifts_do_not_account_for_refuses_the_snapshot(
    client: TestClient, pg_db: Engine
) -> None:
    alice = signup(client, "Alice")
    alice.topup("10.00")
    assert (
        alice.post("/v1/gifts", {"asset": "HKD", "amount": "4.00", "shares": 1}).status_code == 201
    )
    assert hkd_of(snapshot_now(pg_db)) == {alice.user_id: 10_00}
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:  # money nobody can place
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD")
        escrow = ledger.operator_account(session=session, kind=gifts.ESCROW_KIND, asset="HKD")
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=bank.id,
                credit_account_id=escrow.id,
                asset="HKD",
                amount_minor=1_00,
            ),
        )
    with pytest.raises(SnapshotError, match="gift escrow holds"):
        snapshot_now(pg_db)
