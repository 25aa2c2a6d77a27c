"""``payments.check_send`` reads the recipient, both wallets and the sender's balance in one
statement (issue #14), on PostgreSQL and SQLite: the refusals keep their codes, details and
order; the available balance leaves out pending debits and lock lots still locked (and counts
the lots that have unlocked); a recipient's existing wallet is found, a missing one is opened
by ``prepare_send`` only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.ledger.models import Account
from strongroom.money import Asset, Money
from strongroom.payments import service as payments
from strongroom.settings import LedgerLimits

HKD = Asset("HKD", 2)
LIMITS = LedgerLimits()


def _user(session: Session, name: str, *, region: str = "HK", role: str | None = None) -> None:
    session.add(
        User(
            id=f"u_{name}",
            email=f"{name}@example.com",
            password_hash="x",
            name=name,
            region=region,
            operator_role=role,
            created_at=db.utcnow(),
            email_verified_at=db.utcnow(),
        )
    )
    session.flush()


@pytest.fixture
def wallets(factory: sessionmaker[Session]) -> dict[str, int]:
    """Alice holds HK$100.00, of which HK$10.00 is reserved by a pending transfer, HK$30.00
    locked until tomorrow and HK$5.00 in a lot that unlocked yesterday. Bob has an HKD wallet;
    Carol has none; Dave is in another region; Olga is an operator."""
    now = db.utcnow()
    with unit_of_work(factory) as session:
        for name in ("alice", "bob", "carol"):
            _user(session, name)
        _user(session, "dave", region="SG")
        _user(session, "olga", role="finance")
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        alice = ledger.user_wallet_id(session=session, user_id="u_alice", asset="HKD")
        bob = ledger.user_wallet_id(session=session, user_id="u_bob", asset="HKD")
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=bank, credit_account_id=alice, asset="HKD", amount_minor=100_00
            ),
        )
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                kind=TransferKind.PENDING,
                debit_account_id=alice,
                credit_account_id=bob,
                asset="HKD",
                amount_minor=10_00,
            ),
        )
        ledger.lock(
            session=session,
            account_id=alice,
            amount_minor=30_00,
            unlocks_at=now + timedelta(days=1),
        )
        ledger.lock(
            session=session, account_id=alice, amount_minor=5_00, unlocks_at=now - timedelta(days=1)
        )
    return {"alice": alice, "bob": bob}


def _check(session: Session, to: str, minor: int, sender: str = "u_alice") -> payments.CheckedSend:
    return payments.check_send(
        session=session,
        sender=session.get_one(User, sender),
        to=to,
        amount=Money(minor, HKD),
        note=None,
        limits=LIMITS,
    )


def test_available_leaves_out_pending_and_locked_and_the_wallets_are_found(factory, wallets):
    with factory() as session:
        checked = _check(session, "bob@example.com", 60_00)  # 100 - 10 pending - 30 locked
        assert checked.recipient.id == "u_bob"
        assert checked.source_account_id == wallets["alice"]
        assert checked.target_account_id == wallets["bob"]
        assert ledger.balance(session=session, account_id=wallets["alice"]).available_minor == 60_00
        with pytest.raises(DomainError) as locked:  # held, but 30.00 of it is locked (R-TN-2)
            _check(session, "u_bob", 60_01)
        with pytest.raises(DomainError) as refused:  # more than is held: 100 - 10 pending
            _check(session, "u_bob", 90_01)
    assert locked.value.code == "funds_locked"
    assert set(locked.value.details) == {"asset", "locked", "unlocks_at"}
    assert locked.value.details["locked"] == "30.00"
    assert refused.value.code == "insufficient_funds"
    assert refused.value.details == {
        "account_id": wallets["alice"],
        "asset": "HKD",
        "available_minor": "6000",
        "requested_minor": "9001",
    }


def test_a_recipient_without_a_wallet_gets_one_from_prepare_send_only(factory, wallets):
    with factory() as session:
        checked = _check(session, " u_carol ", 1_00)
        assert checked.recipient.id == "u_carol" and checked.target_account_id is None
        count = select(func.count()).select_from(Account).where(Account.owner_id == "u_carol")
        assert session.scalar(count) == 0
        spec = payments.prepare_send(
            session=session,
            sender=session.get_one(User, "u_alice"),
            to="carol@example.com",
            amount=Money(1_00, HKD),
            note=None,
            limits=LIMITS,
        )
        assert session.scalar(count) == 1
        assert spec.credit_account_id == ledger.user_wallet_id(
            session=session, user_id="u_carol", asset="HKD"
        )
        assert spec.debit_account_id == wallets["alice"]


@pytest.mark.parametrize(
    ("to", "minor", "sender", "code", "details"),
    [
        pytest.param("nobody@example.com", 1, "u_alice", "recipient_not_found", {}, id="unknown"),
        pytest.param("not an email", 1, "u_alice", "recipient_not_found", {}, id="malformed"),
        pytest.param("u_olga", 1, "u_alice", "recipient_not_found", {}, id="operator"),
        pytest.param("u_alice", 1, "u_alice", "same_account", {}, id="oneself"),
        pytest.param(
            "dave@example.com",
            1,
            "u_alice",
            "cross_region_transfer",
            {"from_region": "HK", "to_region": "SG"},
            id="other-region",
        ),
        pytest.param(  # the recipient is checked before the money: a refusal for it comes first
            "nobody@example.com", 10**9, "u_alice", "recipient_not_found", {}, id="order"
        ),
        pytest.param(
            "u_alice",
            1,
            "u_carol",
            "insufficient_funds",
            {"account_id": None, "asset": "HKD", "available_minor": "0", "requested_minor": "1"},
            id="no-wallet",
        ),
    ],
)
def test_refusals_keep_their_codes_and_details(factory, wallets, to, minor, sender, code, details):
    with factory() as session, pytest.raises(DomainError) as refused:
        _check(session, to, minor, sender=sender)
    assert refused.value.code == code
    assert refused.value.details == details
