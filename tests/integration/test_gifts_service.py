"""The gifts service on both databases (R-GIFT-1, R-TN-2), with a controlled clock: send into
escrow, claim, expiry refund once, T+N ``funds_locked``, and the limits hook's one call site."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom import worker
from strongroom.db import unit_of_work
from strongroom.errors import DomainError, LimitExceeded
from strongroom.gifts import service as gifts
from strongroom.gifts.models import Gift, GiftShare
from strongroom.gifts.split import Split
from strongroom.identity import service as identity
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.money import Money
from strongroom.settings import GiftSettings, IdempotencySettings, Settings

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HKD = Settings(env="test", secret_key="test-secret-key-0123456789").asset_registry().get("HKD")


@pytest.fixture
def settings() -> Settings:
    return Settings(env="test", secret_key="test-secret-key-0123456789", run_worker=False)


def user(factory: sessionmaker[Session], settings: Settings, name: str, minor: int = 0) -> str:
    with unit_of_work(factory) as session:
        made = identity.register(
            session=session,
            email=f"{name.lower()}@example.com",
            password="a-long-password-1",
            name=name,
            region="HK",
            settings=settings.auth,
        )
        token = verification.send_link(
            session=session, user=made, settings=settings.auth, public_url="http://x"
        )
        verification.verify(session=session, token=token)
        if minor:
            source = ledger.operator_account(session=session, kind="bank", asset="HKD").id
            wallet = ledger.user_wallet_id(session=session, user_id=made.id, asset="HKD")
            ledger.transfer(
                session=session,
                spec=TransferSpec(
                    debit_account_id=source,
                    credit_account_id=wallet,
                    asset="HKD",
                    amount_minor=minor,
                    code="topup",
                ),
            )
        return made.id


def total(factory: sessionmaker[Session], user_id: str) -> int:
    with factory() as session:
        wallet = ledger.user_wallet_id_if_any(session=session, user_id=user_id, asset="HKD")
        return (
            0 if wallet is None else ledger.balance(session=session, account_id=wallet).total_minor
        )


def send(factory, settings, sender_id, minor, shares, split=Split.EQUAL, at=T0, **hook):
    with unit_of_work(factory) as session:
        created = gifts.create(
            session=session,
            sender=session.get_one(User, sender_id),
            amount=Money(minor, HKD),
            shares=shares,
            split=split,
            settings=settings,
            now=at,
            **hook,
        )
        return created.gift.id, created.claim_code


def claim(factory, settings, claimer_id, code, at=T0) -> int:
    with unit_of_work(factory) as session:
        return gifts.claim(
            session=session,
            claimer=session.get_one(User, claimer_id),
            code=code,
            settings=settings,
            now=at,
        ).amount_minor


def ledger_ok(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def test_send_claim_and_expiry_refund_once(factory: sessionmaker[Session], settings: Settings):
    alice = user(factory, settings, "Alice", 10_000)
    bob, carol = user(factory, settings, "Bob"), user(factory, settings, "Carol")
    gift_id, code = send(factory, settings, alice, 1001, 4, Split.RANDOM)
    assert total(factory, alice) == 10_000 - 1001
    got_bob = claim(factory, settings, bob, code, at=T0 + timedelta(hours=1))
    got_carol = claim(factory, settings, carol, code, at=T0 + timedelta(hours=2))
    assert total(factory, bob) == got_bob and total(factory, carol) == got_carol
    keys, gift_settings = IdempotencySettings(), GiftSettings()
    just_before = T0 + timedelta(hours=24) - timedelta(seconds=1)
    assert (
        worker.sweep_once(factory, keys, gift_settings=gift_settings, now=just_before).gifts_expired
        == 0
    )
    after = T0 + timedelta(hours=24)
    assert (
        worker.sweep_once(factory, keys, gift_settings=gift_settings, now=after).gifts_expired == 1
    )
    assert (
        worker.sweep_once(factory, keys, gift_settings=gift_settings, now=after).gifts_expired == 0
    )
    rest = 1001 - got_bob - got_carol
    assert total(factory, alice) == 10_000 - 1001 + rest
    with factory() as session:
        gift = session.get_one(Gift, gift_id)
        assert gift.status == "expired" and gift.refunded_minor == rest
        assert gift.claimed_shares == 2
        shares = session.scalars(select(GiftShare.amount_minor).filter_by(gift_id=gift_id)).all()
        assert sum(shares) == 1001 and min(shares) >= 1
    with pytest.raises(DomainError) as late:
        claim(factory, settings, user(factory, settings, "Dave"), code, at=after)
    assert late.value.code == "gift_expired"
    ledger_ok(factory)


def test_the_sweep_is_bounded_per_run(factory: sessionmaker[Session], settings: Settings):
    alice = user(factory, settings, "Alice", 1000)
    for _ in range(3):
        send(factory, settings, alice, 100, 2)
    later = T0 + timedelta(days=2)
    runs = [
        worker.sweep_once(
            factory,
            IdempotencySettings(),
            gift_settings=GiftSettings(expire_batch_max=2),
            now=later,
        ).gifts_expired
        for _ in range(3)
    ]
    assert runs == [2, 1, 0]
    assert total(factory, alice) == 1000
    ledger_ok(factory)


def test_locked_money_is_refused_as_funds_locked(
    factory: sessionmaker[Session], settings: Settings
):
    alice = user(factory, settings, "Alice", 10_000)
    with unit_of_work(factory) as session:
        wallet = ledger.user_wallet_id(session=session, user_id=alice, asset="HKD")
        ledger.lock(
            session=session, account_id=wallet, amount_minor=3000, unlocks_at=T0 + timedelta(days=1)
        )
        ledger.lock(
            session=session, account_id=wallet, amount_minor=4000, unlocks_at=T0 + timedelta(days=2)
        )
    with pytest.raises(DomainError) as refused:
        send(factory, settings, alice, 5000, 2)  # 3000 free: needs the first lot to unlock
    assert refused.value.code == "funds_locked"
    assert refused.value.details["locked"] == "70.00"
    assert refused.value.details["unlocks_at"] == (T0 + timedelta(days=1)).isoformat()
    with pytest.raises(DomainError) as needs_both:
        send(factory, settings, alice, 9000, 2)
    assert needs_both.value.details["unlocks_at"] == (T0 + timedelta(days=2)).isoformat()
    # once the lots unlock, the same gift goes through
    send(factory, settings, alice, 9000, 2, at=T0 + timedelta(days=3))
    assert total(factory, alice) == 1000
    ledger_ok(factory)


def test_the_limits_hook_is_asked_and_its_refusal_moves_nothing(
    factory: sessionmaker[Session], settings: Settings
):
    alice = user(factory, settings, "Alice", 1000)
    asked: list[tuple[str, int]] = []

    def limits(session: Session, sender: User, amount: Money) -> None:
        asked.append((sender.id, amount.amount_minor))
        raise LimitExceeded("over the gift limit", limit="gift")

    with pytest.raises(LimitExceeded):
        send(factory, settings, alice, 500, 2, limits_check=limits)
    assert asked == [(alice, 500)]
    assert total(factory, alice) == 1000
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Gift)) == 0
