"""Withdrawals over HTTP on PostgreSQL (issue #12 item 3, R-FUND-2, R-FUND-3, R-KYC-6, R-TN-2,
R-SEC-5): the lifecycle per sandbox digit (0-6 pay, 7 fail -> void + email + money back, 8 time
out -> the next poll pays, 9 confirm twice -> posted once), the refusals with their details
(kyc, freeze, T+N, limits, the quick withdrawal limit and 2FA, the whitelist), bad input on every
endpoint (nothing moved), other users' data (404), and ``ledger check`` / ``ledger reconcile``
clean after every test."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.funding.reconcile import reconcile
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.models import Lock, Transfer
from strongroom.notify.models import OutboxEmail
from strongroom.settings import LimitsSettings
from strongroom.withdrawals import service as withdrawals
from strongroom.withdrawals.models import Withdrawal, WithdrawalAddress
from strongroom.withdrawals.reconcile import reconcile_payouts
from tests.api.conftest import PASSWORD, Caller, make_settings, signup

LEGAL = "CHAN Tai Man"
ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wl3"


@pytest.fixture(autouse=True)
def books_balance(pg_db: Engine) -> Iterator[None]:
    """``strongroom ledger check`` and the payout reconciliation pass after every test."""
    yield
    with db.make_session_factory(pg_db)() as session:
        assert reports.check(session=session).ok
        report = reconcile_payouts(session=session)
        assert report.ok, report.as_dict()
        assert reconcile(session=session, settings=make_settings(pg_db)).ok


def primary(engine: Engine, caller: Caller, tier: str = "primary") -> Caller:
    """What KYC approval does: the tier and the verified legal name on the user."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.execute(
            update(User).where(User.id == caller.user_id).values(kyc_tier=tier, legal_name=LEGAL)
        )
    return caller


def link(caller: Caller, account_number: str) -> int:
    response = caller.post(
        "/v1/bank-accounts",
        {
            "holder_name": "Chan Tai Man",
            "bank_code": "004",
            "account_number": account_number,
            "password": PASSWORD,
        },
        key=None,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def withdraw(
    caller: Caller, destination_id: int, amount: str, asset: str = "HKD", **extra: object
) -> httpx.Response:
    return caller.post(
        "/v1/withdrawals",
        {"asset": asset, "amount": amount, "destination_id": destination_id, **extra},
    )


def sweep(app: FastAPI) -> withdrawals.Processed:
    return withdrawals.process_payouts(app.state.session_factory, app.state.settings)


def counts(engine: Engine) -> tuple[int, int]:
    """Ledger transfers and withdrawals."""
    with db.make_session_factory(engine)() as session:
        return (
            session.scalar(select(func.count()).select_from(Transfer)) or 0,
            session.scalar(select(func.count()).select_from(Withdrawal)) or 0,
        )


def emails(engine: Engine, address: str, template_id: str) -> list[str]:
    with db.make_session_factory(engine)() as session:
        return list(
            session.scalars(
                select(OutboxEmail.body_text).where(
                    OutboxEmail.to_address == address, OutboxEmail.template_id == template_id
                )
            )
        )


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def unfreeze(engine: Engine, caller: Caller) -> None:
    """24 hours later, as far as the freeze goes."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.execute(
            update(User).where(User.id == caller.user_id).values(withdrawals_frozen_until=None)
        )


def with_2fa(engine: Engine, caller: Caller) -> str:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        user = session.get_one(User, caller.user_id)
        enrolled = identity.enrol_totp_now(
            session=session, user=user, settings=make_settings(engine).auth
        )
    return enrolled.secret


def ready(
    client: TestClient, engine: Engine, digit: int, name: str = "Alice"
) -> tuple[Caller, int]:
    alice = primary(engine, signup(client, name))
    with db.unit_of_work(db.make_session_factory(engine)) as session:  # R-APC: on every email
        session.execute(
            update(User).where(User.id == alice.user_id).values(anti_phishing_code="QX7K2")
        )
    alice.topup("1000.00")
    return alice, link(alice, f"1234567{digit}")


@pytest.mark.parametrize(
    ("digit", "sweeps", "final"),
    [
        (0, 1, "completed"),
        (6, 1, "completed"),
        (7, 1, "failed"),
        (8, 2, "completed"),
        (9, 1, "completed"),
    ],
)
def test_lifecycle_per_sandbox_digit(
    client: TestClient, app: FastAPI, pg_db: Engine, digit: int, sweeps: int, final: str
) -> None:
    alice, account = ready(client, pg_db, digit)
    created = withdraw(alice, account, "250.00")
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "status"} and body["status"] == "pending"
    row = alice.balance()
    assert (row["total"], row["available"]) == ("1000.00", "750.00")  # drops at once
    shown = alice.get(f"/v1/withdrawals/{body['id']}").json()
    assert {k: shown[k] for k in ("id", "asset", "amount", "status")} == {
        "id": body["id"],
        "asset": "HKD",
        "amount": "250.00",
        "status": "pending",
    }
    assert shown["destination"] == f"****567{digit}"
    for _ in range(sweeps - 1):
        assert sweep(app).waiting == 1
        assert alice.get(f"/v1/withdrawals/{body['id']}").json()["status"] == "pending"
    sweep(app)
    assert alice.get(f"/v1/withdrawals/{body['id']}").json()["status"] == final
    row = alice.balance()
    if final == "completed":
        assert (row["total"], row["available"]) == ("750.00", "750.00")
        (mail,) = emails(pg_db, alice.email, "withdrawals.completed")
        assert "250.00" in mail and f"****567{digit}" in mail and "QX7K2" in mail
    else:
        assert (row["total"], row["available"]) == ("1000.00", "1000.00")  # the money returns
        (mail,) = emails(pg_db, alice.email, "withdrawals.failed")
        assert "back in your wallet" in mail and "QX7K2" in mail
    assert sweep(app) == withdrawals.Processed()  # nothing left to do: once
    with db.make_session_factory(pg_db)() as session:
        record = session.get_one(Withdrawal, body["id"])
        resolutions = session.scalars(
            select(Transfer.kind).where(Transfer.pending_id == record.transfer_id)
        ).all()
        assert len(resolutions) == 1
        assert record.sends == 1 and record.polls == sweeps - 1
        assert record.confirmations == (2 if digit == 9 else 1 if final == "completed" else 0)
    listed = alice.get("/v1/withdrawals").json()["items"]
    assert [w["id"] for w in listed] == [body["id"]]


def test_the_same_key_is_one_withdrawal(client: TestClient, pg_db: Engine) -> None:
    alice, account = ready(client, pg_db, 1)
    request = {"asset": "HKD", "amount": "10.00", "destination_id": account}
    first = alice.post("/v1/withdrawals", request, key="wd-key-1")
    again = alice.post("/v1/withdrawals", request, key="wd-key-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert counts(pg_db)[1] == 1
    other = alice.post("/v1/withdrawals", {**request, "amount": "11.00"}, key="wd-key-1")
    error_of(other, 409, "idempotency_key_reused")
    assert alice.balance()["available"] == "990.00"


def test_refusals_say_why_and_move_nothing(client: TestClient, pg_db: Engine) -> None:
    alice, account = ready(client, pg_db, 1)
    bob = signup(client, "Bob")
    bob.topup("100.00")
    before = counts(pg_db)
    # R-KYC-6: below primary
    primary(pg_db, bob, tier="unverified")
    error_of(withdraw(bob, account, "10.00"), 404, "destination_not_found")  # not his
    # insufficient funds
    error_of(withdraw(alice, account, "1000.01"), 422, "insufficient_funds")
    # the quick withdrawal limit: 500 USDT = HKD 3,900 at the reference prices; no 2FA
    alice.topup("5000.00")
    alice.topup("5000.00")
    error = error_of(withdraw(alice, account, "3900.01"), 403, "two_factor_required")
    assert error["details"] == {"quick_withdrawal_limit": "500", "unit": "USDT"}
    assert counts(pg_db)[1] == before[1]
    # with 2FA: the code is required above the limit, and enough
    secret = with_2fa(pg_db, alice)
    error_of(withdraw(alice, account, "3900.01"), 401, "otp_required")
    error_of(withdraw(alice, account, "3900.01", otp="000000"), 401, "invalid_otp")
    assert counts(pg_db)[1] == before[1]
    ok = withdraw(alice, account, "3900.01", otp=pyotp.TOTP(secret).now())
    assert ok.status_code == 201, ok.text
    assert withdraw(alice, account, "3900.00").status_code == 201  # at the limit: no code


def test_a_security_change_freezes_withdrawals(client: TestClient, pg_db: Engine) -> None:
    """R-SEC-5: removing a bank account freezes withdrawals for 24 hours."""
    alice, account = ready(client, pg_db, 1)
    other = link(alice, "99999990")
    removed = alice.client.request(
        "DELETE",
        f"/v1/bank-accounts/{other}",
        json={"password": PASSWORD},
        headers=alice.headers(),
    )
    assert removed.status_code == 204, removed.text
    moved = counts(pg_db)
    error = error_of(withdraw(alice, account, "1.00"), 403, "withdrawals_frozen")
    assert error["details"]["frozen_until"]
    assert counts(pg_db) == moved
    unfreeze(pg_db, alice)
    assert withdraw(alice, account, "1.00").status_code == 201


def test_kyc_and_limits_refusals(pg_db: Engine) -> None:
    """SPEC's tier table: unverified cannot withdraw; primary 5,000 a transaction, 10 a day."""
    settings = make_settings(pg_db).model_copy(update={"limits": LimitsSettings()})
    with TestClient(create_app(settings, pg_db)) as client:
        alice, account = ready(client, pg_db, 2)
        primary(pg_db, alice, tier="unverified")
        before = counts(pg_db)
        error = error_of(withdraw(alice, account, "10.00"), 403, "kyc_required")
        assert error["details"] == {"required_tier": "primary"}
        primary(pg_db, alice)
        error = error_of(withdraw(alice, account, "5000.01"), 422, "limit_exceeded")
        assert error["details"]["limit"] == "per_transaction"
        assert counts(pg_db) == before
        for _ in range(10):
            assert withdraw(alice, account, "1.00").status_code == 201
        error = error_of(withdraw(alice, account, "1.00"), 422, "limit_exceeded")
        assert error["details"]["limit"] == "withdrawals_per_day"
        assert error["details"]["left"] == "0" and error["details"]["frees_at"]


def add_address(caller: Caller, **body: object) -> httpx.Response:
    return caller.post(
        "/v1/withdrawal-addresses",
        {"asset": "USDT", "address": ADDRESS, "password": PASSWORD, **body},
        key=None,
    )


def test_crypto_to_an_address_with_t_plus_n_and_the_whitelist(
    client: TestClient, app: FastAPI, pg_db: Engine
) -> None:
    alice = primary(pg_db, signup(client, "Alice"))
    alice.topup("100.000000", "USDT")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:  # as a fiat-channel
        wallet = ledger.user_wallet_id(session=session, user_id=alice.user_id, asset="USDT")
        ledger.lock(  # purchase leaves it (R-TN-1; the tests' default settings hold nothing)
            session=session,
            account_id=wallet,
            amount_minor=100_000_000,
            unlocks_at=db.utcnow() + timedelta(hours=24),
        )
    added = add_address(alice, label="cold wallet")
    assert added.status_code == 201, added.text
    address_id = added.json()["id"]
    listed = alice.get("/v1/withdrawal-addresses").json()
    assert listed["whitelist_only"] is False
    assert [(a["id"], a["whitelisted"]) for a in listed["items"]] == [(address_id, False)]
    before = counts(pg_db)
    error = error_of(withdraw(alice, address_id, "10.000000", "USDT"), 422, "funds_locked")
    assert (error["details"]["asset"], error["details"]["locked"]) == ("USDT", "100.000000")
    assert error["details"]["unlocks_at"]
    assert counts(pg_db) == before
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:  # N hours later
        session.execute(update(Lock).values(unlocks_at=db.utcnow() - timedelta(seconds=1)))
    error_of(withdraw(alice, address_id, "10.00", "HKD"), 404, "destination_not_found")
    made = withdraw(alice, address_id, "10.000000", "USDT")
    assert made.status_code == 201, made.text
    assert alice.balance("USDT")["available"] == "90.000000"
    sweep(app)  # the address ends in 3: paid
    assert alice.get(f"/v1/withdrawals/{made.json()['id']}").json()["status"] == "completed"
    # whitelist mode on: a security change (freeze); only whitelisted addresses
    mode = alice.client.put(
        "/v1/withdrawal-settings",
        json={"whitelist_only": True, "password": PASSWORD},
        headers=alice.headers(),
    )
    assert mode.status_code == 200 and mode.json()["whitelist_only"] is True, mode.text
    assert len(emails(pg_db, alice.email, "security.settings_changed")) == 1
    error_of(withdraw(alice, address_id, "1.000000", "USDT"), 403, "address_not_whitelisted")
    listed_ok = add_address(
        alice, address="0x52908400098527886E0F7030069857D2E4169EE7", whitelisted=True
    )
    assert listed_ok.status_code == 201, listed_ok.text
    error_of(withdraw(alice, listed_ok.json()["id"], "1.000000", "USDT"), 403, "withdrawals_frozen")
    unfreeze(pg_db, alice)
    assert withdraw(alice, listed_ok.json()["id"], "1.000000", "USDT").status_code == 201
    sweep(app)  # ends in 7: fails, the money returns
    assert alice.balance("USDT")["available"] == "90.000000"


def test_address_book_bad_input_and_other_users(client: TestClient, pg_db: Engine) -> None:
    alice = primary(pg_db, signup(client, "Alice"))
    bob = primary(pg_db, signup(client, "Bob"))
    error_of(add_address(alice, password=None), 403, "reauthentication_required")
    error_of(add_address(alice, asset="HKD"), 422, "asset_not_crypto")
    error_of(add_address(alice, address="short"), 422, "invalid_address")
    error_of(add_address(alice, address="bad address with spaces 123"), 422, "invalid_address")
    error_of(add_address(alice, address=[1]), 422, "validation_error")
    with db.make_session_factory(pg_db)() as session:
        assert session.scalar(select(func.count()).select_from(WithdrawalAddress)) == 0
    added = add_address(alice)
    assert added.status_code == 201
    error_of(add_address(alice), 409, "address_exists")
    address_id = added.json()["id"]
    gone = bob.client.request(
        "DELETE",
        f"/v1/withdrawal-addresses/{address_id}",
        json={"password": PASSWORD},
        headers=bob.headers(),
    )
    error_of(gone, 404, "address_not_found")
    assert bob.get("/v1/withdrawal-addresses").json()["items"] == []
    bob.topup("10.000000", "USDT")
    error_of(withdraw(bob, address_id, "1.000000", "USDT"), 404, "destination_not_found")
    removed = alice.client.request(
        "DELETE",
        f"/v1/withdrawal-addresses/{address_id}",
        json={"password": PASSWORD},
        headers=alice.headers(),
    )
    assert removed.status_code == 204, removed.text
    assert alice.get("/v1/withdrawal-addresses").json()["items"] == []
    error = alice.client.put(
        "/v1/withdrawal-settings",
        json={"quick_withdrawal_limit": "-1", "password": PASSWORD},
        headers=alice.headers(),
    )
    error_of(error, 422, "invalid_quick_limit")
    assert alice.get("/v1/withdrawal-settings").json()["quick_withdrawal_limit"] == "500"


def test_bad_input_and_other_users_withdrawals(client: TestClient, pg_db: Engine) -> None:
    alice, account = ready(client, pg_db, 1)
    bob, bob_account = ready(client, pg_db, 2, name="Bob")
    before = counts(pg_db)
    for amount, code in (
        ("0", "invalid_amount"),
        ("-1.00", "invalid_amount"),
        ("abc", "invalid_amount"),
        ("1.001", "invalid_amount"),
    ):
        error_of(withdraw(alice, account, amount), 422, code)
    error_of(withdraw(alice, account, "1.00", asset="XYZ"), 422, "unknown_asset")
    error_of(withdraw(alice, bob_account, "1.00"), 404, "destination_not_found")
    error_of(withdraw(alice, 987654, "1.00"), 404, "destination_not_found")
    error_of(withdraw(alice, 0, "1.00"), 422, "validation_error")
    no_key = alice.post(
        "/v1/withdrawals", {"asset": "HKD", "amount": "1.00", "destination_id": account}, key=None
    )
    error_of(no_key, 422, "idempotency_key_required")
    assert client.post("/v1/withdrawals", json={}).status_code == 401
    assert counts(pg_db) == before
    made = withdraw(alice, account, "1.00").json()
    error_of(bob.get(f"/v1/withdrawals/{made['id']}"), 404, "withdrawal_not_found")
    error_of(alice.get("/v1/withdrawals/wd_unknown"), 404, "withdrawal_not_found")
    assert bob.get("/v1/withdrawals").json()["items"] == []
    assert client.get(f"/v1/withdrawals/{made['id']}").status_code == 401


def test_several_workers_at_once_pay_each_withdrawal_once(
    client: TestClient, app: FastAPI, pg_db: Engine
) -> None:
    """Four sweeps at once over the same open payouts (``FOR UPDATE SKIP LOCKED``)."""
    alice = primary(pg_db, signup(client, "Alice"))
    alice.topup("1000.00")
    accounts = [link(alice, f"7777000{d}") for d in (1, 7, 9)]
    made = [withdraw(alice, accounts[i % 3], "10.00").json()["id"] for i in range(9)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: sweep(app), range(4)))
    sweep(app)  # whatever a skipped row left
    statuses = [alice.get(f"/v1/withdrawals/{i}").json()["status"] for i in made]
    assert statuses == ["completed", "failed", "completed"] * 3
    with db.make_session_factory(pg_db)() as session:
        rows = session.scalars(select(Withdrawal)).all()
        assert {(r.sends, r.polls) for r in rows} <= {(1, 0), (1, 1)}
    assert alice.balance()["total"] == "940.00"
    assert len(emails(pg_db, alice.email, "withdrawals.completed")) == 6
    assert len(emails(pg_db, alice.email, "withdrawals.failed")) == 3
