"""Proof of reserves from the real ledger: the snapshot, publication, and the API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.app import create_app
from strongroom.db import unit_of_work
from strongroom.errors import Conflict
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.reserves import service as reserves
from strongroom.reserves.audit import read_root
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.service import ReserveLine
from strongroom.reserves.snapshot import SnapshotError, from_ledger
from strongroom.settings import get_settings
from strongroom_verify import por_v1
from tests.api.conftest import make_settings, signup

SECRET = bytes(range(32))


def scales() -> dict[str, int]:
    return {a.code: a.scale for a in get_settings().asset_registry().all()}


def fund(session: Session, user_id: str, asset: str, amount_minor: int) -> None:
    bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=asset)
    wallet = ledger.user_wallet(session=session, user_id=user_id, asset=asset)
    ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=bank.id,
            credit_account_id=wallet.id,
            asset=asset,
            amount_minor=amount_minor,
        ),
    )


def pay(session: Session, payer: str, payee: str, asset: str, amount_minor: int) -> None:
    source = ledger.user_wallet(session=session, user_id=payer, asset=asset)
    target = ledger.user_wallet(session=session, user_id=payee, asset=asset)
    ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=source.id,
            credit_account_id=target.id,
            asset=asset,
            amount_minor=amount_minor,
        ),
    )


def test_ledger_balances_appear_in_the_tree(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with unit_of_work(factory) as session:
        fund(session, "alice", "HKD", 100_00)
        fund(session, "alice", "BTC", 5_000_000)
        fund(session, "bob", "HKD", 20_00)
        pay(session, "alice", "bob", "HKD", 30_00)
        ledger.user_wallet(session=session, user_id="carol", asset="HKD")  # empty wallet
        ledger.operator_account(session=session, kind="fee", asset="HKD")  # not a user
    with factory() as session:
        snapshot = from_ledger(session=session, scales=scales())
        if session.get_bind().dialect.name == "postgresql":
            assert session.scalar(text("SHOW transaction_isolation")) == "repeatable read"
            assert session.scalar(text("SHOW transaction_read_only")) == "on"
        session.rollback()
    assert [a.code for a in snapshot.assets] == ["BTC", "HKD"]
    assert snapshot.as_mapping() == {"alice": (5_000_000, 70_00), "bob": (0, 50_00)}
    assert snapshot.totals == (5_000_000, 120_00)
    audit = build(snapshot, tmp_path / "audit", secret=SECRET, options=BuildOptions(workers=1))
    server = ProofServer(tmp_path / "audit")
    alice = server.proof("alice")
    assert alice["balances"] == {"BTC": "0.05000000", "HKD": "70.00"}
    assert por_v1.verify_proof(alice).valid
    assert por_v1.verify_proof(server.proof("bob")).valid
    assert server.leaves_of("carol") is None
    assert audit.totals_text() == {"BTC": "0.05000000", "HKD": "120.00"}


def test_an_empty_ledger_is_refused(factory: sessionmaker[Session]) -> None:
    with factory() as session, pytest.raises(SnapshotError, match="no user wallets"):
        from_ledger(session=session, scales=scales())


def test_publish_and_ratios(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with unit_of_work(factory) as session:
        fund(session, "alice", "HKD", 300_00)
    with factory() as session:
        snapshot = from_ledger(session=session, scales=scales())
    audit = build(
        snapshot,
        tmp_path / "audit",
        secret=SECRET,
        audit_id="2026-11-30",
        options=BuildOptions(workers=1),
    )
    lines = [
        ReserveLine("HKD", 250_00, "HSBC statement", "ab" * 32, date(2026, 11, 30)),
        ReserveLine("HKD", 100_00, "cash", None, date(2026, 11, 30)),
    ]
    with unit_of_work(factory) as session:
        row = reserves.publish(
            session=session, audit=audit, tree_dir=str(tmp_path / "audit"), reserves=lines
        )
        view = reserves.summary(session=session, audit=row)
    assert view["reserves"] == {"HKD": "350.00"}
    assert view["ratios"] == {"HKD": "1.1666"}  # 350 / 300, rounded down
    assert len(view["sources"]) == 2
    with unit_of_work(factory) as session:  # publishing again replaces the reserves
        reserves.publish(
            session=session, audit=audit, tree_dir=str(tmp_path / "audit"), reserves=lines[:1]
        )
        view = reserves.summary(session=session, audit=reserves.latest(session=session))
    assert view["ratios"] == {"HKD": "0.8333"}
    other = build(
        snapshot,
        tmp_path / "other",
        secret=bytes(32),
        audit_id="2026-11-30",
        options=BuildOptions(workers=1),
    )
    with unit_of_work(factory) as session, pytest.raises(Conflict):
        reserves.publish(session=session, audit=other, tree_dir=str(tmp_path / "other"))


def test_ratio_text_is_exact() -> None:
    assert reserves.ratio_text(2, 3) == "0.6666"
    assert reserves.ratio_text(10**40, 10**40 - 1) == "1.0000"
    assert reserves.ratio_text(5, 0) is None


def test_reserves_csv_is_checked(tmp_path: Path) -> None:
    from strongroom.errors import ValidationFailed
    from strongroom_verify.por_v1 import Asset

    path = tmp_path / "r.csv"
    path.write_text(
        "asset,amount,source,evidence_sha256,as_of\n"
        "HKD,10.00,bank,,2026-11-30\n"
        "HKD,1.001,bank2,,2026-11-30\n"
        "BTC,1,custody,,2026-11-30\n"
        "HKD,5,bank,,2026-11-30\n"
        "HKD,5,bank3,XYZ,2026-11-30\n"
        "HKD,5,bank4,,yesterday\n"
    )
    with pytest.raises(ValidationFailed) as refused:
        reserves.read_reserves(path, [Asset("HKD", 2)])
    problems = refused.value.details["problems"]
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(3, 8)]
    path.write_text("asset,amount,source,evidence_sha256,as_of\nHKD,10.5,bank,,2026-11-30\n")
    assert reserves.read_reserves(path, [Asset("HKD", 2)]) == [
        ReserveLine("HKD", 10_50, "bank", None, date(2026, 11, 30))
    ]


# ------------------------------------------------------------------------------------------------
# HTTP API


@pytest.fixture
def client(pg_db: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(pg_db), pg_db)) as test_client:
        yield test_client


def test_api_latest_audit_and_the_signed_in_users_proof(
    client: TestClient, pg_db: Engine, tmp_path: Path
) -> None:
    missing = client.get("/v1/reserves/latest")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_audit"
    alice, bob = signup(client, "Alice"), signup(client, "Bob")
    factory = db.make_session_factory(pg_db)
    with unit_of_work(factory) as session:
        fund(session, alice.user_id, "HKD", 123_45)
        fund(session, alice.user_id, "USDT", 7_000_000)
    with factory() as session:
        snapshot = from_ledger(session=session, scales=scales())
    audit = build(
        snapshot,
        tmp_path / "audit",
        secret=SECRET,
        audit_id="2026-12-01",
        options=BuildOptions(workers=1),
    )
    with unit_of_work(factory) as session:
        reserves.publish(
            session=session,
            audit=audit,
            tree_dir=str(tmp_path / "audit"),
            reserves=[ReserveLine("HKD", 200_00, "bank", None, date(2026, 12, 1))],
        )
    latest = client.get("/v1/reserves/latest")
    assert latest.status_code == 200, latest.text
    body = latest.json()
    assert body["audit_id"] == "2026-12-01" and body["root"] == audit.root.hex()
    assert body["totals"] == {"HKD": "123.45", "USDT": "7.000000"}
    assert body["leaf_count"] == audit.leaf_count
    assert body["created_at"].endswith("Z")
    assert body["reserves"] == {"HKD": "200.00", "USDT": "0.000000"}
    assert body["ratios"] == {"HKD": "1.6200", "USDT": "0.0000"}
    proof = alice.get("/v1/reserves/2026-12-01/proof")
    assert proof.status_code == 200, proof.text
    assert proof.json()["account_id"] == alice.user_id
    assert proof.json()["balances"] == {"HKD": "123.45", "USDT": "7.000000"}
    assert por_v1.verify_proof(proof.json()).valid
    assert read_root(tmp_path / "audit").root.hex() == proof.json()["root"]
    absent = bob.get("/v1/reserves/2026-12-01/proof")
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "not_in_audit"
    unknown = alice.get("/v1/reserves/1999-01-01/proof")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "audit_not_found"
    anonymous = client.get("/v1/reserves/2026-12-01/proof")
    assert anonymous.status_code == 401
