"""The top-up records and their one credit (``funding.topups``), webhooks and reconcile, on
both supported databases (SQLite has no row locks: the deterministic transfer id and the
record's state still credit once); and the sandbox payout connector's rules (SPEC §13)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.errors import Conflict
from strongroom.funding import connectors, topups, webhooks
from strongroom.funding.connectors import PayoutStatus, SandboxPayoutConnector
from strongroom.funding.reconcile import reconcile
from strongroom.identity import service as identity
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.money import Money
from strongroom.settings import Settings
from tests.api.connector_support import FPS_SECRET, connector_settings, notification


def _user(session: Session, settings: Settings) -> User:
    user = identity.register(
        session=session,
        email=f"u{time.monotonic_ns()}@example.com",
        password="a-long-password-1",
        name="Ann",
        region="HK",
        settings=settings.auth,
    )
    token = verification.send_link(
        session=session, user=user, settings=settings.auth, public_url="http://x"
    )
    verification.verify(session=session, token=token)
    return user


def _hkd(settings: Settings, minor: int) -> Money:
    return Money(minor, settings.asset_registry().get("HKD"))


def _deliver(session: Session, settings: Settings, body: bytes) -> webhooks.Received:
    stamp = str(int(time.time()))
    headers = {
        "strongroom-timestamp": stamp,
        "strongroom-signature": webhooks.sign(FPS_SECRET, stamp, body),
    }
    return webhooks.handle(
        session=session,
        connector="fps",
        headers=headers,
        body=body,
        remote_address="127.0.0.1",
        settings=settings,
    )


def test_one_credit_per_topup_and_reconcile_on_both_databases(
    any_db: Engine, factory: sessionmaker[Session]
) -> None:
    settings = connector_settings(any_db)
    with db.unit_of_work(factory) as session:
        user = _user(session, settings)
        user_id = user.id
        record = topups.request(
            session=session,
            user=user,
            amount=_hkd(settings, 10_000),
            channel="fps",
            settings=settings,
        )
        reference, topup_id = record.external_reference, record.id
    body = notification(reference, amount="99.00")
    with db.unit_of_work(factory) as session:
        assert _deliver(session, settings, body).outcome == topups.CREDITED
    with db.unit_of_work(factory) as session:
        assert _deliver(session, settings, body).outcome == topups.DUPLICATE
    with db.unit_of_work(factory) as session:
        failed = _deliver(session, settings, notification(reference, "failed"))
        assert failed.outcome == topups.IGNORED
    with factory() as session:
        wallet = ledger.user_wallet(session=session, user_id=user_id, asset="HKD")
        assert ledger.balance(session=session, account_id=wallet.id).total_minor == 9_900
        assert reports.check(session=session).ok
        report = reconcile(session=session, settings=settings)
        assert report.ok and report.confirmed_records == report.topup_transfers == 1
        assert session.get_one(topups.Topup, topup_id).status == topups.CONFIRMED


def test_fail_then_confirm_is_refused_and_expiry_on_both_databases(
    any_db: Engine, factory: sessionmaker[Session]
) -> None:
    settings = connector_settings(any_db)
    with db.unit_of_work(factory) as session:
        user = _user(session, settings)
        failing = topups.request(
            session=session,
            user=user,
            amount=_hkd(settings, 500),
            channel="card",
            settings=settings,
        )
        topups.fail(session=session, topup=failing, reason="declined")
        with pytest.raises(Conflict):
            topups.confirm(session=session, topup=failing, received_minor=500)
        stale = topups.request(
            session=session,
            user=user,
            amount=_hkd(settings, 700),
            channel="store_cash",
            settings=settings,
        )
        stale_id = stale.id
    later = db.utcnow() + timedelta(minutes=16)
    with db.unit_of_work(factory) as session:
        assert topups.expire(session=session, now=later) == 1
    with db.unit_of_work(factory) as session:
        record = topups.find(session=session, topup_id=stale_id, for_update=True)
        assert record.status == topups.EXPIRED
        with pytest.raises(topups.TopupExpired):
            topups.confirm_at_store(session=session, topup=record, received_minor=700)
    with factory() as session:
        assert reconcile(session=session, settings=settings).ok


@pytest.mark.parametrize(
    ("account", "sent", "polled", "confirmations"),
    [
        ("012-345-6780", PayoutStatus.PAID, PayoutStatus.PAID, 1),
        ("0123456", PayoutStatus.PAID, PayoutStatus.PAID, 1),
        ("0123457", PayoutStatus.FAILED, PayoutStatus.FAILED, 1),
        ("0123458", PayoutStatus.TIMED_OUT, PayoutStatus.PAID, 1),
        ("0123459", PayoutStatus.PAID, PayoutStatus.PAID, 2),
    ],
)
def test_the_sandbox_payout_connector_decides_by_the_last_digit(
    account: str, sent: PayoutStatus, polled: PayoutStatus, confirmations: int
) -> None:
    payouts = SandboxPayoutConnector()
    amount = Money(100, Settings(env="test").asset_registry().get("HKD"))
    first = payouts.send(payout_id="po_1", account_number=account, amount=amount)
    assert (first.status, first.confirmations) == (sent, confirmations)
    assert payouts.poll(payout_id="po_1", account_number=account, amount=amount).status == polled


def test_the_sandbox_topup_scenarios_by_the_last_two_digits() -> None:
    hkd = Settings(env="test").asset_registry().get("HKD")
    pick = {
        minor: connectors.sandbox_scenario(Money(minor, hkd))
        for minor in (1200, 1277, 1288, 1299, 77)
    }
    assert pick == {
        1200: connectors.Scenario.CONFIRM,
        1277: connectors.Scenario.FAIL,
        1288: connectors.Scenario.TIME_OUT,
        1299: connectors.Scenario.CONFIRM_TWICE,
        77: connectors.Scenario.FAIL,
    }
