"""One balance model (issue #9, R-LEDGER-4): every reader shows the ledger's ``Balance`` for a
wallet with a pending debit and locked lots, not a formula of its own.

The wallet: HK$100.00 topped up, HK$30.00 reserved by a pending transfer, HK$20.00 locked for two
more hours (a T+N lot) and a lot of HK$5.00 that unlocked an hour ago. So: total 100.00, pending
30.00, locked 20.00, available 50.00, one unlock of 20.00.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import service as identity
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import Balance, TransferKind, TransferSpec
from strongroom.reserves import snapshot
from strongroom.web.lite import forms
from tests.api.conftest import PASSWORD
from tests.web.conftest import WebUser, sandbox_topup, web_sign_in, web_user
from tests.web.console_support import console_sign_in, make_operator

EXPECTED = {"total": "100.00", "available": "50.00", "pending": "30.00", "locked": "20.00"}


@dataclass
class Wallet:
    user: WebUser
    user_id: str
    account_id: int
    balance: Balance


@pytest.fixture
def wallet(pg_db: Engine) -> Wallet:
    user = web_user(pg_db, "Wendy")
    sandbox_topup(pg_db, user.email, "100.00")
    now = db.utcnow()
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        found = identity.find_user(session=session, reference=user.email)
        assert found is not None
        account = ledger.user_wallet_id(session=session, user_id=found.id, asset="HKD")
        payee = ledger.operator_account(session=session, kind="suspense", asset="HKD").id
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                kind=TransferKind.PENDING,
                debit_account_id=account,
                credit_account_id=payee,
                asset="HKD",
                amount_minor=30_00,
            ),
        )
        ledger.lock(
            session=session,
            account_id=account,
            amount_minor=20_00,
            unlocks_at=now + timedelta(hours=2),
        )
        ledger.lock(
            session=session,
            account_id=account,
            amount_minor=5_00,
            unlocks_at=now - timedelta(hours=1),
        )
        held = ledger.balance(session=session, account_id=account)
        user_id = found.id
    return Wallet(user=user, user_id=user_id, account_id=account, balance=held)


def test_the_ledger_balance_itself(wallet: Wallet) -> None:
    held = wallet.balance
    assert (held.total_minor, held.pending_minor, held.locked_minor) == (100_00, 30_00, 20_00)
    assert held.available_minor == 50_00
    assert [lot.amount_minor for lot in held.unlocks] == [20_00]


def test_api_balances(wallet: Wallet, http: httpx.Client) -> None:
    login = http.post("/v1/auth/login", json={"email": wallet.user.email, "password": PASSWORD})
    token = login.json()["token"]
    body = http.get("/v1/balances", headers={"Authorization": f"Bearer {token}"}).json()
    [row] = body["balances"]
    assert {key: row[key] for key in EXPECTED} == EXPECTED
    [unlock] = row["unlocks"]
    assert unlock["amount"] == "20.00"
    assert unlock["at"].startswith(wallet.balance.unlocks[0].at.isoformat()[:19])


def test_api_operator_account_view(wallet: Wallet, http: httpx.Client, pg_db: Engine) -> None:
    from tests.api.conftest import operator

    admin = operator(http, pg_db, "admin")
    account = http.get(f"/v1/admin/ledger/accounts/{wallet.account_id}", headers=admin.headers())
    assert account.status_code == 200, account.text
    body = account.json()
    assert (body["total"], body["available"], body["locked"]) == ("100.00", "50.00", "20.00")
    assert body["debits_pending"] == "30.00"


def test_lite_home(wallet: Wallet, http: httpx.Client) -> None:
    web_sign_in(http, wallet.user)
    html = http.get("/app/balances").text
    card = re.search(r'<article class="card balance" data-asset="HKD">(.*?)</article>', html, re.S)
    assert card is not None, html
    text = re.sub(r"<[^>]+>", " ", card.group(1))
    assert "100.00" in text
    assert "Available: 50.00" in text
    assert "Locked: 20.00" in text


def test_console_user_page(wallet: Wallet, http: httpx.Client, pg_db: Engine) -> None:
    console_sign_in(http, make_operator(pg_db, "admin"))
    html = http.get(f"/console/users/{wallet.user_id}").text
    row = re.search(r'<tr data-asset="HKD">(.*?)</tr>', html, re.S)
    assert row is not None, html
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
    assert cells == [EXPECTED["total"], EXPECTED["available"], EXPECTED["pending"], "20.00"]


def test_lite_forms_available(wallet: Wallet, pg_db: Engine) -> None:
    with db.make_session_factory(pg_db)() as session:
        user = identity.find_user(session=session, reference=wallet.user.email)
        assert user is not None
        assert forms.available_by_asset(session=session, user=user) == {"HKD": 50_00}


def test_proof_of_reserves_snapshot(wallet: Wallet, pg_db: Engine) -> None:
    with db.make_session_factory(pg_db)() as session:
        taken = snapshot.from_ledger(session=session, scales={"HKD": 2})
    totals = dict(zip([asset.code for asset in taken.assets], taken.totals, strict=True))
    assert totals["HKD"] == wallet.balance.total_minor == 100_00
