"""Issue #12: crypto bought with fiat at a quote through a top-up channel (``POST
/v1/purchases``), and the emails of top-ups and purchases.

A worked example runs through every test: BTC/HKD mid 500,000 with a 100 bps spread, so a user
paying HKD 1,000.00 buys at the ask (505,000): exactly 198,019.80... satoshi, rounded down to
0.00198019 BTC; the 0.80 satoshi stays in the operator's FX account. For each acceptance line
(happy path, failure, timeout, duplicate webhook, forged signature, replayed old webhook, stale
quote, limits, T+N lock, reconcile): money moves exactly once or not at all, the user sees the
right status, and every test ends with ``strongroom ledger check`` passing and reconcile
finding no break (``settled``) unless it planted one."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from strongroom import db, worker
from strongroom.app import create_app
from strongroom.errors import DomainError
from strongroom.funding import topups
from strongroom.funding.models import Purchase
from strongroom.fx.models import FxQuote
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Account, Lock
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.money import Money
from strongroom.notify import delivery
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings, TierLimits
from tests.api.conftest import ROOMY_LIMITS, Caller, operator, signup
from tests.api.connector_support import (
    connector_settings,
    notification,
    reconciled,
    send_webhook,
    settled,
)
from tests.integration.identity.conftest import SmtpServer, free_port
from tests.web.conftest import fingerprint

PAID = "1000.00"
BOUGHT = "0.00198019"
BOUGHT_MINOR = 198019
PAID_MINOR = 100000


def _settings(engine: Engine, **limits: Any) -> Settings:
    """Every connector on, no tier limits but T+N holds of 24 hours (R-TN-1)."""
    settings = connector_settings(engine)
    return settings.model_copy(
        update={"limits": ROOMY_LIMITS.model_copy(update={"tn_hours": 24, **limits})}
    )


@pytest.fixture
def settings(pg_db: Engine) -> Settings:
    return _settings(pg_db)


@pytest.fixture
def app(pg_db: Engine, settings: Settings) -> FastAPI:
    return create_app(settings, pg_db)


@pytest.fixture
def alice(client: TestClient, pg_db: Engine) -> Caller:
    finance = operator(client, pg_db, role="finance")
    rate = client.put(
        "/v1/admin/fx/rates/BTC/HKD",
        json={"mid": "500000", "spread_bps": 100},
        headers=finance.headers(),
    )
    assert rate.status_code == 200, rate.text
    return signup(client, "Alice")


def _quote(user: Caller, amount: str = PAID, to_asset: str = "BTC") -> dict[str, Any]:
    body = {"from_asset": "HKD", "to_asset": to_asset, "amount": amount}
    response = user.post("/v1/fx/quotes", body, key=None)
    assert response.status_code == 201, response.text
    quote: dict[str, Any] = response.json()
    return quote


def _buy(
    user: Caller, channel: str, amount: str = PAID, key: str | None = "auto"
) -> httpx.Response:
    return user.post(
        "/v1/purchases", {"quote_id": _quote(user, amount)["quote_id"], "channel": channel}, key
    )


def _bought(user: Caller, channel: str, amount: str = PAID) -> dict[str, Any]:
    response = _buy(user, channel, amount)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def _fx_account(engine: Engine, asset: str) -> tuple[int, int]:
    """(credits posted, debits posted) of the operator's FX account in ``asset``."""
    with db.make_session_factory(engine)() as session:
        row = session.scalars(
            select(Account).filter_by(owner_type="operator", kind="fx", asset=asset)
        ).first()
        return (0, 0) if row is None else (row.credits_posted, row.debits_posted)


def _emails(engine: Engine, address: str, template_id: str) -> list[str]:
    with db.make_session_factory(engine)() as session:
        return list(
            session.scalars(
                select(OutboxEmail.body_text).where(
                    OutboxEmail.to_address == address, OutboxEmail.template_id == template_id
                )
            )
        )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.astimezone()


def _money(engine: Engine) -> dict[str, int]:
    """Row counts, less what a refused request may leave (audit, throttles, quotes)."""
    counts = fingerprint(engine)
    for kept in ("audit_events", "fx_quotes", "rate_limit_buckets", "funding_webhook_deliveries"):
        counts.pop(kept, None)
    return counts


# --------------------------------------------------------------------------- happy paths


def test_sandbox_purchase_credits_the_quoted_btc_locked_through_the_fx_accounts(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    quote = _quote(alice)
    assert (quote["from_amount"], quote["to_amount"]) == (PAID, BOUGHT)
    key = uuid.uuid4().hex
    body = {"quote_id": quote["quote_id"], "channel": "sandbox"}
    response = alice.post("/v1/purchases", body, key)
    assert response.status_code == 201, response.text
    bought = response.json()
    assert bought["status"] == "completed" and bought["id"].startswith("pu_")
    assert (bought["asset"], bought["amount"]) == ("BTC", BOUGHT)
    assert (bought["pay_asset"], bought["pay_amount"], bought["received_amount"]) == (
        "HKD",
        PAID,
        PAID,
    )
    assert bought["rate"] == quote["rate"] and bought["quote_id"] == quote["quote_id"]

    # the user's HKD is untouched (they paid through the channel); the BTC is theirs, locked
    assert alice.balance("HKD")["total"] is None
    row = alice.balance("BTC")
    assert (row["total"], row["locked"], row["available"]) == (BOUGHT, BOUGHT, "0.00000000")
    unlocks: list[dict[str, str]] = row["unlocks"]  # type: ignore[assignment]
    (unlock,) = unlocks
    assert unlock["amount"] == BOUGHT
    assert datetime.fromisoformat(unlock["at"]) == datetime.fromisoformat(bought["unlocks_at"])
    with db.make_session_factory(pg_db)() as session:
        purchase = session.get_one(Purchase, bought["id"])
        lot = session.scalars(select(Lock)).one()
        assert purchase.credit_transfer_id == f"purchase:{purchase.id}.credit"
        credit = ledger.transfer_by_id(session=session, transfer_id=purchase.credit_transfer_id)
        assert purchase.lock_s == 24 * 3600
        assert _aware(lot.unlocks_at) - _aware(credit.created_at) == timedelta(hours=24)
        exact = Fraction(session.get_one(FxQuote, quote["quote_id"]).to_exact)

    # the FX accounts: HKD 1,000.00 in, 0.00198019 BTC out; the rounding (< 1 satoshi) stays
    assert _fx_account(pg_db, "HKD") == (PAID_MINOR, 0)
    assert _fx_account(pg_db, "BTC") == (0, BOUGHT_MINOR)
    assert exact == Fraction(PAID_MINOR * 10**6, 505000)
    assert BOUGHT_MINOR <= exact < BOUGHT_MINOR + 1

    again = alice.post("/v1/purchases", body, key)  # the same Idempotency-Key: the same one
    assert again.status_code == 201 and again.json()["id"] == bought["id"]
    assert alice.get(f"/v1/purchases/{bought['id']}").json() == bought
    assert alice.balance("BTC")["total"] == BOUGHT
    (mail,) = _emails(pg_db, alice.email, "funding.purchase_completed")
    assert BOUGHT in mail and PAID in mail and bought["id"] in mail
    settled(pg_db, settings)
    report = reconciled(pg_db, settings)
    assert (report.bought_purchases, report.purchase_transfers) == (1, 2)


@pytest.mark.parametrize("channel", ["card", "fps"])
def test_webhook_purchase_buys_once_whatever_the_duplicates(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller, channel: str
) -> None:
    opened = _bought(alice, channel)
    assert opened["status"] == "pending" and opened["reference"]
    assert opened["instruction"] == {"fps": "reference", "card": "card_session"}[channel]
    assert alice.balance("BTC")["total"] is None

    body = notification(opened["reference"], amount=PAID)
    credited = send_webhook(client, channel, body)
    assert credited.status_code == 200, credited.text
    assert credited.json()["outcome"] == "credited"
    assert send_webhook(client, channel, body).json()["outcome"] == "duplicate"
    late_failure = send_webhook(client, channel, notification(opened["reference"], "failed"))
    assert late_failure.json()["outcome"] == "ignored"

    shown = alice.get(f"/v1/purchases/{opened['id']}").json()
    assert shown["status"] == "completed" and shown["unlocks_at"]
    assert alice.balance("BTC")["total"] == BOUGHT and alice.balance("HKD")["total"] is None
    assert _fx_account(pg_db, "BTC") == (0, BOUGHT_MINOR)
    assert len(_emails(pg_db, alice.email, "funding.purchase_completed")) == 1
    assert _emails(pg_db, alice.email, "funding.topup_completed") == []
    settled(pg_db, settings)


# --------------------------------------------------------------------------- failure paths


def test_failed_payment_buys_nothing_and_says_so_once(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    opened = _bought(alice, "fps")
    before = _money(pg_db)
    failure = notification(opened["reference"], "failed")
    assert send_webhook(client, "fps", failure).json()["outcome"] == "failed"
    assert send_webhook(client, "fps", failure).json()["outcome"] == "duplicate"
    refused = send_webhook(client, "fps", notification(opened["reference"], amount=PAID))
    _error(refused, 409, "topup_already_failed")
    assert alice.get(f"/v1/purchases/{opened['id']}").json()["status"] == "failed"
    assert alice.balance("BTC")["total"] is None and alice.balance("HKD")["total"] is None
    after = _money(pg_db)
    assert after.pop("mail_outbox") == before.pop("mail_outbox") + 1
    assert after == before
    (mail,) = _emails(pg_db, alice.email, "funding.purchase_failed")
    assert "nothing was taken" in mail
    settled(pg_db, settings)


def test_sandbox_failure_and_timeout_paths(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    failed = _bought(alice, "sandbox", "1000.77")  # ..77: the sandbox declines
    assert failed["status"] == "failed"
    timed_out = _bought(alice, "sandbox", "1000.88")  # ..88: no answer until the next poll
    assert timed_out["status"] == "pending"
    assert alice.balance("BTC")["total"] is None

    factory = db.make_session_factory(pg_db)
    swept = worker.sweep_once(factory, settings.idempotency, funding=settings.funding)
    assert swept.topups_polled == 1
    shown = alice.get(f"/v1/purchases/{timed_out['id']}").json()
    assert shown["status"] == "completed"
    assert alice.balance("BTC")["total"] == timed_out["amount"]
    twice = _bought(alice, "sandbox", "1000.99")  # ..99: confirmed twice, bought once
    assert twice["status"] == "completed"
    with db.make_session_factory(pg_db)() as session:
        wallet = ledger.user_wallet(session=session, user_id=alice.user_id, asset="BTC")
    credited = Fraction(timed_out["amount"]) + Fraction(twice["amount"])
    assert Fraction(wallet.credits_posted, 10**8) == credited
    assert len(_emails(pg_db, alice.email, "funding.purchase_failed")) == 1
    assert len(_emails(pg_db, alice.email, "funding.purchase_completed")) == 2
    settled(pg_db, settings)


def test_forged_and_replayed_webhooks_move_nothing(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    opened = _bought(alice, "card")
    body = notification(opened["reference"], amount=PAID)
    before = _money(pg_db)
    _error(send_webhook(client, "card", body, secret="not-the-secret"), 401, "invalid_signature")
    old = int(time.time()) - settings.funding.webhook_tolerance_s - 60
    _error(send_webhook(client, "card", body, timestamp=old), 400, "timestamp_outside_window")
    assert _money(pg_db) == before
    assert alice.get(f"/v1/purchases/{opened['id']}").json()["status"] == "pending"
    assert alice.balance("BTC")["total"] is None
    settled(pg_db, settings)


def test_a_payment_after_the_hold_or_of_another_amount_is_credited_in_hkd(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    late = _bought(alice, "fps")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            update(Purchase)
            .where(Purchase.id == late["id"])
            .values(held_until=datetime.now().astimezone() - timedelta(seconds=1))
        )
    credited = send_webhook(client, "fps", notification(late["reference"], amount=PAID))
    assert credited.json()["outcome"] == "credited"
    assert alice.get(f"/v1/purchases/{late['id']}").json()["status"] == "fiat_credited"
    assert alice.balance("HKD")["total"] == PAID and alice.balance("BTC")["total"] is None

    short = _bought(alice, "card")  # in time, but not the quoted amount
    send_webhook(client, "card", notification(short["reference"], amount="999.00"))
    assert alice.get(f"/v1/purchases/{short['id']}").json()["status"] == "fiat_credited"
    assert alice.balance("HKD")["total"] == "1999.00" and alice.balance("BTC")["total"] is None
    assert _fx_account(pg_db, "BTC") == (0, 0)
    mails = _emails(pg_db, alice.email, "funding.purchase_failed")
    assert len(mails) == 2 and any("HKD 999.00 is in your wallet" in m for m in mails)
    settled(pg_db, settings)


# --------------------------------------------------------------------------- refusals


def test_a_stale_or_used_quote_is_refused_and_nothing_moves(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    stale = _quote(alice)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            update(FxQuote)
            .where(FxQuote.id == stale["quote_id"])
            .values(expires_at=datetime.now().astimezone() - timedelta(seconds=1))
        )
    before = _money(pg_db)
    refused = alice.post("/v1/purchases", {"quote_id": stale["quote_id"], "channel": "sandbox"})
    _error(refused, 409, "quote_expired")
    assert _money(pg_db) == before

    used = _quote(alice)
    body = {"quote_id": used["quote_id"], "channel": "sandbox"}
    assert alice.post("/v1/purchases", body).status_code == 201
    after = _money(pg_db)
    _error(alice.post("/v1/purchases", body), 409, "quote_used")
    # a quote bought is spent: a conversion of it is refused too
    _error(alice.post("/v1/conversions", {"quote_id": used["quote_id"]}), 409, "quote_expired")
    assert _money(pg_db) == after
    assert alice.balance("BTC")["total"] == BOUGHT
    settled(pg_db, settings)


def test_limits_apply_to_the_fiat_paid_and_the_btc_bought(
    client: TestClient, pg_db: Engine, alice: Caller
) -> None:
    capped = TierLimits(
        per_transaction="500",
        per_day=None,
        per_year=None,
        max_balance=None,
        withdrawals_per_day=None,
        crypto_withdrawals_24h_btc=None,
    )
    tiers = {tier: capped for tier in ROOMY_LIMITS.tiers}
    limited = _settings(pg_db, tiers=tiers)
    with TestClient(create_app(limited, pg_db)) as other:
        alice.client = other
        before = _money(pg_db)
        for channel in ("sandbox", "card"):
            error = _error(_buy(alice, channel), 422, "limit_exceeded")
            assert error["details"]["limit"] == "per_transaction"
        assert _money(pg_db) == before
        assert _bought(alice, "sandbox", "400.00")["status"] == "completed"
        settled(pg_db, limited)


def test_bought_btc_is_locked_for_p2p_and_withdrawal_but_may_pay_a_merchant_or_convert(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    _bought(alice, "sandbox")
    bob = signup(client, "Bob")
    refused = alice.post("/v1/transfers", {"to": bob.email, "asset": "BTC", "amount": "0.0001"})
    assert _error(refused, 422, "funds_locked")["details"]["asset"] == "BTC"
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:  # the engine's own check
        session.execute(update(User).where(User.id == alice.user_id).values(kyc_tier="primary"))
    with db.make_session_factory(pg_db)() as session:
        user = session.get_one(User, alice.user_id)
        wallet = ledger.user_wallet_id(session=session, user_id=user.id, asset="BTC")
        with pytest.raises(DomainError) as withdrawal:
            limits.check(
                session=session,
                user=user,
                operation=Operation.CRYPTO_WITHDRAWAL,
                amount=Money(10_000, settings.asset_registry().get("BTC")),
                settings=settings,
                account_id=wallet,
            )
        assert withdrawal.value.code == "funds_locked"
        # a merchant payment may spend locked money (R-TN-2): the engine lets it through
        # (merchants here take only their region's fiat, so a BTC charge is refused earlier,
        # by ``asset_not_accepted``, whatever the lock)
        limits.check(
            session=session,
            user=user,
            operation=Operation.MERCHANT_PAYMENT,
            amount=Money(10_000, settings.asset_registry().get("BTC")),
            settings=settings,
            account_id=wallet,
        )
    # and it may be converted, its lock carried to what it buys
    sold = alice.post(
        "/v1/fx/quotes", {"from_asset": "BTC", "to_asset": "HKD", "amount": "0.001"}, key=None
    )
    assert sold.status_code == 201, sold.text
    converted = alice.post("/v1/conversions", {"quote_id": sold.json()["quote_id"]})
    assert converted.status_code == 201, converted.text
    assert alice.balance("BTC")["total"] == "0.00098019"
    assert alice.balance("HKD")["locked"] == alice.balance("HKD")["total"]
    settled(pg_db, settings)


def test_reconcile_is_clean_then_reports_planted_breaks(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    bought = _bought(alice, "sandbox")
    settled(pg_db, settings)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        fx_btc = ledger.operator_account(session=session, kind="fx", asset="BTC").id
        wallet = ledger.user_wallet_id(session=session, user_id=alice.user_id, asset="BTC")
        ledger.transfer(  # a leg that no purchase names
            session=session,
            spec=TransferSpec(
                id="purchase:pu_planted.credit",
                debit_account_id=fx_btc,
                credit_account_id=wallet,
                asset="BTC",
                amount_minor=5,
                code="topup",
            ),
        )
        session.execute(  # the record says more BTC than the ledger moved
            update(Purchase)
            .where(Purchase.id == bought["id"])
            .values(amount_minor=BOUGHT_MINOR + 1)
        )
    report = reconciled(pg_db, settings)
    kinds = sorted(found.kind for found in report.breaks)
    assert not report.ok and kinds == ["amount_mismatch", "transfer_without_record"], kinds


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_clearly_and_moves_nothing(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    finance = operator(client, pg_db, role="finance")
    client.put(
        "/v1/admin/fx/rates/USD/HKD",
        json={"mid": "7.8", "spread_bps": 10},
        headers=finance.headers(),
    )
    quote_id = _quote(alice)["quote_id"]
    bob = signup(client, "Bob")
    before = _money(pg_db)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"channel": "sandbox"}, 422, "validation_error"),
        ({"quote_id": quote_id}, 422, "validation_error"),
        ({"quote_id": "q_!!", "channel": "sandbox"}, 422, "validation_error"),
        ({"quote_id": 12, "channel": "sandbox"}, 422, "validation_error"),
        ({"quote_id": "q_" + "0" * 32, "channel": "sandbox"}, 404, "quote_not_found"),
        ({"quote_id": quote_id, "channel": "bitcoin"}, 422, "unknown_channel"),
        ({"quote_id": quote_id, "channel": "store_cash"}, 422, "unknown_channel"),
        ({"quote_id": quote_id, "channel": ""}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        _error(alice.post("/v1/purchases", body), status, code)
    _error(
        bob.post("/v1/purchases", {"quote_id": quote_id, "channel": "sandbox"}),
        404,
        "quote_not_found",
    )
    usd = _quote(alice, "100.00", "USD")["quote_id"]
    _error(
        alice.post("/v1/purchases", {"quote_id": usd, "channel": "sandbox"}), 422, "not_a_purchase"
    )
    no_key = alice.post("/v1/purchases", {"quote_id": quote_id, "channel": "sandbox"}, key=None)
    _error(no_key, 422, "idempotency_key_required")
    anonymous = client.post("/v1/purchases", json={"quote_id": quote_id, "channel": "sandbox"})
    assert anonymous.status_code == 401
    assert _money(pg_db) == before

    mine = _bought(alice, "card")
    _error(bob.get(f"/v1/purchases/{mine['id']}"), 404, "purchase_not_found")
    _error(alice.get("/v1/purchases/pu_nothing"), 404, "purchase_not_found")
    _error(alice.get("/v1/purchases/bad!id"), 422, "validation_error")
    assert client.get(f"/v1/purchases/{mine['id']}").status_code == 401
    settled(pg_db, settings)


# --------------------------------------------------------------------------- top-up emails


@pytest.mark.parametrize("channel", ["fps", "card"])
def test_a_completed_top_up_emails_once_with_the_anti_phishing_code(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller, channel: str
) -> None:
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:  # R-APC: on every email
        session.execute(
            update(User).where(User.id == alice.user_id).values(anti_phishing_code="QX7K2")
        )
    opened = alice.post("/v1/topups", {"asset": "HKD", "amount": "100.00", "channel": channel})
    reference = opened.json()["reference"]
    body = notification(reference, amount="100.00")
    assert send_webhook(client, channel, body).json()["outcome"] == "credited"
    assert send_webhook(client, channel, body).json()["outcome"] == "duplicate"
    (mail,) = _emails(pg_db, alice.email, "funding.topup_completed")
    assert "HKD 100.00" in mail and "QX7K2" in mail and opened.json()["id"] in mail
    settled(pg_db, settings)


def test_the_emails_reach_a_real_smtp_server_once_each(pg_db: Engine, alice: Caller) -> None:
    server = SmtpServer(free_port())
    server.start()
    try:
        mailing = _settings(pg_db).model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": server.port}
        )
        with TestClient(create_app(mailing, pg_db)) as other:
            alice.client = other
            with db.unit_of_work(db.make_session_factory(pg_db)) as session:
                session.execute(
                    update(User).where(User.id == alice.user_id).values(anti_phishing_code="QX7K2")
                )
            bought = _bought(alice, "card")
            topup = alice.post("/v1/topups", {"asset": "HKD", "amount": "100.00", "channel": "fps"})
            for _ in range(2):  # every notification delivered twice
                send_webhook(other, "card", notification(bought["reference"], amount=PAID))
                send_webhook(other, "fps", notification(topup.json()["reference"]))
            delivery.deliver_once(db.make_session_factory(pg_db), mailing)
        mails = [
            m for m in server.inbox.to(alice.email) if m["Subject"].startswith(("You", "Your"))
        ]
        subjects = sorted(m["Subject"] for m in mails)
        assert subjects == [
            f"You bought BTC {BOUGHT} for HKD {PAID}",
            "Your top-up of HKD 100.00 arrived",
        ], subjects
        for message in mails:
            text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
            assert "QX7K2" in text
    finally:
        server.stop()


def test_an_unpaid_purchase_expires_with_its_payment_and_moves_nothing(
    client: TestClient, pg_db: Engine, settings: Settings, alice: Caller
) -> None:
    opened = _bought(alice, "card")  # a card session is valid 30 minutes
    before = _money(pg_db)
    later = datetime.now().astimezone() + timedelta(minutes=31)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        assert topups.expire(session=session, now=later) == 1
    assert alice.get(f"/v1/purchases/{opened['id']}").json()["status"] == "expired"
    assert _money(pg_db) == before
    assert alice.balance("BTC")["total"] is None
    settled(pg_db, settings)
