"""The limits engine on the journal (R-LIMIT-1, R-KYC-6, R-TN-1..3) with a controllable clock:
the request-time check (``limits.check``) and the guard the ledger runs in the applying
transaction (``ledger.transfer`` of a ``TransferSpec`` with ``guard=``) refuse alike, the
windows roll (23:59:59 vs 24:00:01 after a transfer), pending transfers count while pending and
voided ones do not, and fiat-channel purchases are locked for N hours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.errors import DomainError
from strongroom.funding import service as funding
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.ledger.models import Lock, Transfer
from strongroom.limits import service as limits
from strongroom.limits.rules import DEBIT, JOURNAL, Operation
from strongroom.settings import LimitsSettings, Settings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def settings(**rules: object) -> Settings:
    return Settings(
        env="test",
        secret_key="test-secret-key-0123456789",
        limits=LimitsSettings.model_validate(rules),
    )


SETTINGS = settings()


def make_user(session: Session, tier: str = "unverified", nationality: str | None = None) -> User:
    user = User(
        id=uuid.uuid4().hex,
        email=f"{uuid.uuid4().hex[:8]}@example.com",
        password_hash="-",
        name="Test User",
        region="HK",
        kyc_tier=tier,
        nationality=nationality,
        email_verified_at=T0 - timedelta(days=400),
    )
    session.add(user)
    session.flush()
    return user


def seed(session: Session, user: User, major: str, asset: str = "HKD") -> None:
    """Money on the user's wallet that no limit counts (code ``seed``)."""
    registry = SETTINGS.asset_registry()
    money = registry.money(major, asset)
    bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=asset)
    wallet = ledger.user_wallet_id(session=session, user_id=user.id, asset=asset)
    ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=bank.id,
            credit_account_id=wallet,
            asset=asset,
            amount_minor=money.amount_minor,
            code="seed",
        ),
        now=T0 - timedelta(days=400),
    )


def move(
    session: Session,
    user: User,
    operation: Operation,
    major: str,
    at: datetime,
    asset: str = "HKD",
    *,
    kind: TransferKind = TransferKind.POSTED,
    rules: Settings = SETTINGS,
) -> str:
    """One transfer of ``operation`` as the ledger applies it, guarded, at ``at``."""
    money = rules.asset_registry().money(major, asset)
    journal = JOURNAL[operation]
    wallet = ledger.user_wallet_id(session=session, user_id=user.id, asset=asset)
    other = ledger.operator_account(session=session, kind="suspense", asset=asset).id
    debit, credit = (wallet, other) if journal.side == DEBIT else (other, wallet)
    return ledger.transfer(
        session=session,
        spec=TransferSpec(
            kind=kind,
            debit_account_id=debit,
            credit_account_id=credit,
            asset=asset,
            amount_minor=money.amount_minor,
            code=journal.code,
            guard=limits.guard(user=user, operation=operation, settings=rules),
        ),
        now=at,
    )


def check(
    session: Session,
    user: User,
    operation: Operation,
    major: str,
    at: datetime,
    asset: str = "HKD",
    rules: Settings = SETTINGS,
) -> None:
    money = rules.asset_registry().money(major, asset)
    account = ledger.user_wallet_id_if_any(session=session, user_id=user.id, asset=asset)
    limits.check(
        session=session,
        user=user,
        operation=operation,
        amount=money,
        settings=rules,
        account_id=account,
        now=at,
    )


def refused(call: object, code: str) -> dict[str, object]:
    assert callable(call)
    with pytest.raises(DomainError) as error:
        call()
    assert error.value.code == code, error.value
    return error.value.details


@pytest.fixture
def session(any_db: Engine):
    factory = db.make_session_factory(any_db)
    with factory() as session, session.begin():
        yield session


def test_the_day_window_rolls_at_24_hours(session: Session) -> None:
    alice = make_user(session)
    seed(session, alice, "10000")
    move(session, alice, Operation.P2P_SEND, "1000", T0)
    move(session, alice, Operation.P2P_SEND, "2000", T0 + timedelta(hours=1))
    expected = {
        "limit": "day",
        "limit_amount": "3000.00",
        "left": "0.00",
        "frees_at": (T0 + timedelta(hours=24)).isoformat(),
    }
    edge = T0 + timedelta(hours=23, minutes=59, seconds=59)
    assert (
        refused(lambda: check(session, alice, Operation.P2P_SEND, "0.01", edge), "limit_exceeded")
        == expected
    )
    # the guard in the applying transaction says the same, and nothing is written
    count = session.scalar(select(func.count()).select_from(Transfer))
    assert (
        refused(lambda: move(session, alice, Operation.P2P_SEND, "0.01", edge), "limit_exceeded")
        == expected
    )
    assert session.scalar(select(func.count()).select_from(Transfer)) == count
    after = T0 + timedelta(hours=24, seconds=1)
    check(session, alice, Operation.P2P_SEND, "1000", after)
    over = refused(
        lambda: check(session, alice, Operation.P2P_SEND, "1000.01", after), "limit_exceeded"
    )
    assert over["frees_at"] == (T0 + timedelta(hours=25)).isoformat()
    move(session, alice, Operation.P2P_SEND, "1000", after)
    # each operation has its own windows
    check(session, alice, Operation.MERCHANT_PAYMENT, "2000", after)


def test_the_year_window_and_the_operations_own_windows(session: Session) -> None:
    bob = make_user(session)
    seed(session, bob, "30000")
    for day in range(8):  # 8 x 3,000 over 8 days
        move(session, bob, Operation.GIFT, "2000", T0 + timedelta(days=day))
        move(session, bob, Operation.GIFT, "1000", T0 + timedelta(days=day, hours=1))
    later = T0 + timedelta(days=9)
    check(session, bob, Operation.GIFT, "1000", later)
    details = refused(
        lambda: check(session, bob, Operation.GIFT, "1000.01", later), "limit_exceeded"
    )
    assert details == {
        "limit": "year",
        "limit_amount": "25000.00",
        "left": "1000.00",
        "frees_at": (T0 + timedelta(days=365)).isoformat(),
    }
    check(session, bob, Operation.P2P_SEND, "2000", later)  # p2p has a year of its own


def test_pending_counts_while_pending_and_voided_does_not(session: Session) -> None:
    carol = make_user(session)
    seed(session, carol, "5000")
    pending = move(session, carol, Operation.P2P_SEND, "2000", T0, kind=TransferKind.PENDING)
    move(session, carol, Operation.P2P_SEND, "1000", T0)
    refused(lambda: check(session, carol, Operation.P2P_SEND, "0.01", T0), "limit_exceeded")
    ledger.transfer(
        session=session,
        spec=TransferSpec(kind=TransferKind.POST_PENDING, pending_id=pending, amount_minor=50000),
        now=T0,
    )  # 500 of the 2,000 posted: 500 counts
    check(session, carol, Operation.P2P_SEND, "1500", T0)
    second = move(session, carol, Operation.P2P_SEND, "1500", T0, kind=TransferKind.PENDING)
    refused(lambda: check(session, carol, Operation.P2P_SEND, "0.01", T0), "limit_exceeded")
    ledger.transfer(
        session=session,
        spec=TransferSpec(kind=TransferKind.VOID_PENDING, pending_id=second),
        now=T0,
    )
    check(session, carol, Operation.P2P_SEND, "1500", T0)


def test_withdrawals_count_per_day_and_none_below_primary(session: Session) -> None:
    dan = make_user(session, "primary")
    seed(session, dan, "1000")
    for i in range(10):
        move(session, dan, Operation.FIAT_WITHDRAWAL, "1", T0 + timedelta(minutes=i))
    now = T0 + timedelta(hours=2)
    expected = {
        "limit": "withdrawals_per_day",
        "limit_amount": "10",
        "left": "0",
        "frees_at": (T0 + timedelta(hours=24)).isoformat(),
    }
    assert (
        refused(lambda: check(session, dan, Operation.FIAT_WITHDRAWAL, "1", now), "limit_exceeded")
        == expected
    )
    assert (
        refused(lambda: move(session, dan, Operation.FIAT_WITHDRAWAL, "1", now), "limit_exceeded")
        == expected
    )
    check(session, dan, Operation.FIAT_WITHDRAWAL, "1", T0 + timedelta(hours=24, seconds=1))
    erin = make_user(session)
    seed(session, erin, "100")
    for operation in (Operation.FIAT_WITHDRAWAL, Operation.CRYPTO_WITHDRAWAL):
        assert refused(lambda op=operation: check(session, erin, op, "1", now), "kyc_required") == {
            "required_tier": "primary"
        }
    assert refused(
        lambda: move(session, erin, Operation.FIAT_WITHDRAWAL, "1", now), "kyc_required"
    ) == {"required_tier": "primary"}


def test_crypto_withdrawals_in_btc_equivalent_over_24_hours(session: Session) -> None:
    fay = make_user(session, "primary")
    seed(session, fay, "100", "BTC")
    seed(session, fay, "2000", "ETH")
    move(session, fay, Operation.CRYPTO_WITHDRAWAL, "50", T0, "BTC")
    move(session, fay, Operation.CRYPTO_WITHDRAWAL, "800", T0 + timedelta(hours=2), "ETH")  # 28 BTC
    now = T0 + timedelta(hours=3)
    check(session, fay, Operation.CRYPTO_WITHDRAWAL, "2", now, "BTC")
    details = refused(
        lambda: check(session, fay, Operation.CRYPTO_WITHDRAWAL, "100", now, "ETH"),
        "limit_exceeded",
    )
    assert details == {
        "limit": "crypto_withdrawals_24h",
        "limit_amount": "80.00000000",
        "left": "2.00000000",
        "frees_at": (T0 + timedelta(hours=24)).isoformat(),  # 50 BTC slide out
    }
    # fiat withdrawals are another window; crypto ones are not counted there
    check(
        session, fay, Operation.CRYPTO_WITHDRAWAL, "2", T0 + timedelta(hours=24, seconds=1), "BTC"
    )


def test_max_balance_on_top_up_over_the_fiat_wallets(session: Session) -> None:
    gus = make_user(session)
    seed(session, gus, "2000")
    seed(session, gus, "100", "USD")  # 780 HKD
    seed(session, gus, "1", "BTC")  # not fiat
    details = refused(lambda: check(session, gus, Operation.TOPUP, "220.01", T0), "limit_exceeded")
    assert details == {
        "limit": "max_balance",
        "limit_amount": "3000.00",
        "left": "220.00",
        "frees_at": None,
    }
    refused(lambda: move(session, gus, Operation.TOPUP, "220.01", T0), "limit_exceeded")
    move(session, gus, Operation.TOPUP, "220", T0)
    refused(lambda: move(session, gus, Operation.TOPUP, "0.01", T0, "USD"), "limit_exceeded")


def test_the_request_path_of_a_top_up_checks_before_writing(session: Session) -> None:
    hal = make_user(session)
    before = session.scalar(select(func.count()).select_from(Transfer))
    details = refused(
        lambda: funding.prepare_topup(
            session=session,
            user=hal,
            amount=SETTINGS.asset_registry().money("2000.01", "HKD"),
            channel="sandbox",
            settings=SETTINGS,
        ),
        "limit_exceeded",
    )
    assert details["limit"] == "per_transaction"
    assert ledger.user_wallet_id_if_any(session=session, user_id=hal.id, asset="HKD") is None
    assert session.scalar(select(func.count()).select_from(Transfer)) == before


@pytest.mark.parametrize(("nationality", "hours"), [(None, 24), ("KP", 72)])
def test_a_fiat_channel_purchase_is_locked_for_n_hours(
    session: Session, nationality: str | None, hours: int
) -> None:
    rules = settings(tn_high_risk_nationalities=["KP"])
    ivy = make_user(session, "primary", nationality)
    spec = funding.prepare_topup(
        session=session,
        user=ivy,
        amount=rules.asset_registry().money("0.001", "BTC"),
        channel="sandbox",
        settings=rules,
    )
    assert spec.lock_s == hours * 3600
    ledger.transfer(session=session, spec=spec, now=T0)
    unlocks = T0 + timedelta(hours=hours)
    assert session.scalar(select(Lock.unlocks_at)) in (unlocks, unlocks.replace(tzinfo=None))
    wallet = ledger.user_wallet_id(session=session, user_id=ivy.id, asset="BTC")
    shown = ledger.balance(session=session, account_id=wallet, now=T0)
    assert (shown.locked_minor, shown.available_minor) == (100_000, 0)
    locked = {"asset": "BTC", "locked": "0.00100000", "unlocks_at": unlocks.isoformat()}
    for operation in (
        Operation.P2P_SEND,
        Operation.FIAT_WITHDRAWAL,
        Operation.CRYPTO_WITHDRAWAL,
        Operation.GIFT,
    ):
        assert (
            refused(
                lambda op=operation: check(session, ivy, op, "0.0005", T0, "BTC", rules),
                "funds_locked",
            )
            == locked
        )
    # the guard refuses it in the applying transaction too
    assert (
        refused(
            lambda: move(session, ivy, Operation.P2P_SEND, "0.0005", T0, "BTC", rules=rules),
            "funds_locked",
        )
        == locked
    )
    # merchants and conversions may use locked money
    check(session, ivy, Operation.MERCHANT_PAYMENT, "0.0005", T0, "BTC", rules)
    check(session, ivy, Operation.CONVERSION, "0.001", T0, "BTC", rules)
    move(session, ivy, Operation.MERCHANT_PAYMENT, "0.0005", T0, "BTC", rules=rules)
    # after N hours all is free
    free = unlocks + timedelta(seconds=1)
    check(session, ivy, Operation.P2P_SEND, "0.0005", free, "BTC", rules)
    move(session, ivy, Operation.P2P_SEND, "0.0005", free, "BTC", rules=rules)


def test_fiat_bought_with_fiat_is_not_locked(session: Session) -> None:
    jay = make_user(session)
    spec = funding.prepare_topup(
        session=session,
        user=jay,
        amount=SETTINGS.asset_registry().money("100", "HKD"),
        channel="sandbox",
        settings=SETTINGS,
    )
    assert spec.lock_s is None
