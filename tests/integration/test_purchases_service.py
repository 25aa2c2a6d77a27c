"""Purchases of crypto paid in fiat at a quote (``movements.purchases``, ``funding.purchases``),
on both supported databases: one purchase per quote, bought once however often the webhook
repeats, through the FX accounts, T+N locked, one email; a failed payment buys nothing; the
migration's table and reconcile agree."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.errors import Conflict
from strongroom.funding import topups, webhooks
from strongroom.funding.models import Purchase
from strongroom.funding.reconcile import reconcile
from strongroom.fx import service as fx
from strongroom.fx.models import FxRate
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.money import Money
from strongroom.movements import purchases as buying
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.api.conftest import ROOMY_LIMITS
from tests.api.connector_support import CARD_SECRET, FPS_SECRET, connector_settings, notification
from tests.integration.test_topups_service import _user

SECRETS = {"fps": FPS_SECRET, "card": CARD_SECRET}


def _settings(engine: Engine) -> Settings:
    return connector_settings(engine).model_copy(
        update={"limits": ROOMY_LIMITS.model_copy(update={"tn_hours": 24})}
    )


def _deliver(session: Session, settings: Settings, connector: str, body: bytes) -> str:
    stamp = str(int(time.time()))
    headers = {
        "strongroom-timestamp": stamp,
        "strongroom-signature": webhooks.sign(SECRETS[connector], stamp, body),
    }
    return webhooks.handle(
        session=session,
        connector=connector,
        headers=headers,
        body=body,
        remote_address="127.0.0.1",
        settings=settings,
    ).outcome


def _purchase(session: Session, settings: Settings, user: User, channel: str) -> Purchase:
    registry = settings.asset_registry()
    quote = fx.quote(
        session=session,
        user=user,
        amount=Money(100_000, registry.get("HKD")),
        to_asset=registry.get("BTC"),
        settings=settings.fx,
    )
    return buying.buy(
        session=session,
        user=user,
        quote_id=quote.id,
        channel=channel,
        settings=settings,
        assets=registry,
    )


def test_a_purchase_buys_once_through_the_fx_accounts_on_both_databases(
    any_db: Engine, factory: sessionmaker[Session]
) -> None:
    settings = _settings(any_db)
    with db.unit_of_work(factory) as session:
        session.add(FxRate(base="BTC", quote="HKD", mid="500000", spread_bps=100))
        user = _user(session, settings)
        user_id = user.id
        bought = _purchase(session, settings, user, "fps")
        failing = _purchase(session, settings, user, "card")
        with pytest.raises(Conflict) as used:
            buying.buy(
                session=session,
                user=user,
                quote_id=bought.quote_id,
                channel="fps",
                settings=settings,
                assets=settings.asset_registry(),
            )
        assert used.value.code == "quote_used"
        paid = topups.find(session=session, topup_id=bought.topup_id).external_reference
        declined = topups.find(session=session, topup_id=failing.topup_id).external_reference
        purchase_id = bought.id
    body = notification(paid, amount="1000.00")
    for expected in (topups.CREDITED, topups.DUPLICATE):
        with db.unit_of_work(factory) as session:
            assert _deliver(session, settings, "fps", body) == expected
    with db.unit_of_work(factory) as session:
        assert _deliver(session, settings, "card", notification(declined, "failed")) == "failed"
    with factory() as session:
        wallet = ledger.user_wallet(session=session, user_id=user_id, asset="BTC")
        held = ledger.balance(session=session, account_id=wallet.id)
        assert (held.total_minor, held.locked_minor) == (198_019, 198_019)
        assert ledger.user_wallet_id_if_any(session=session, user_id=user_id, asset="HKD") is None
        fx_hkd = ledger.operator_account(session=session, kind="fx", asset="HKD")
        fx_btc = ledger.operator_account(session=session, kind="fx", asset="BTC")
        assert (fx_hkd.credits_posted, fx_btc.debits_posted) == (100_000, 198_019)
        purchase = session.get_one(Purchase, purchase_id)
        assert purchase.outcome == "bought" and purchase.unlocks_at is not None
        templates = session.scalars(
            select(OutboxEmail.template_id).where(OutboxEmail.user_id == user_id)
        ).all()
        assert sorted(t for t in templates if t.startswith("funding.")) == [
            "funding.purchase_completed",
            "funding.purchase_failed",
        ]
        assert reports.check(session=session).ok
        report = reconcile(session=session, settings=settings)
        assert report.ok, report.as_dict()
        assert (report.bought_purchases, report.purchase_transfers) == (1, 2)
