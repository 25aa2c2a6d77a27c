"""Helpers for the merchant tests: a merchant onboarded by an admin, its terminal keys, codes
to charge, balances of the merchant's and the operator's accounts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.db import Base
from strongroom.identity.models import AuditEvent
from strongroom.ledger import service as ledger
from strongroom.ledger.models import Account
from tests.api.conftest import Caller

BANK = {"holder_name": "Lucky Tea House Ltd", "bank_code": "004", "account_number": "123456789"}


@dataclass
class Terminal:
    client: TestClient
    key: str
    merchant_id: str

    def headers(self, idempotency: str | None = "auto") -> dict[str, str]:
        headers = {"X-Api-Key": self.key}
        if idempotency is not None:
            headers["Idempotency-Key"] = uuid.uuid4().hex if idempotency == "auto" else idempotency
        return headers

    def charge(self, body: dict[str, Any], idempotency: str | None = "auto") -> httpx.Response:
        return self.client.post(
            "/v1/merchant/charges", json=body, headers=self.headers(idempotency)
        )

    def refund(
        self, charge_id: str, amount: str, idempotency: str | None = "auto"
    ) -> httpx.Response:
        return self.client.post(
            "/v1/merchant/refunds",
            json={"charge_id": charge_id, "amount": amount},
            headers=self.headers(idempotency),
        )

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.client.get(path, headers=self.headers(None), params=params)  # type: ignore[arg-type]


def onboard(admin: Caller, region: str = "HK", name: str = "Lucky Tea House", **extra: Any) -> str:
    body = {"name": name, "mcc": "5812", "region": region, "settlement_bank_account": BANK}
    created = admin.post("/v1/admin/merchants", {**body, **extra}, key=None)
    assert created.status_code == 201, created.text
    merchant_id: str = created.json()["merchant_id"]
    return merchant_id


def terminal(admin: Caller, merchant_id: str, role: str | None = None) -> Terminal:
    body = {} if role is None else {"role": role}
    made = admin.post(f"/v1/admin/merchants/{merchant_id}/api-keys", body, key=None)
    assert made.status_code == 201, made.text
    assert isinstance(admin.client, TestClient)
    return Terminal(admin.client, made.json()["api_key"], merchant_id)


def code_of(user: Caller) -> str:
    """A fresh payment code (a new device each time: one code per device and time step)."""
    device = user.post("/v1/devices", {"name": f"phone {uuid.uuid4().hex[:6]}"}, key=None)
    assert device.status_code == 201, device.text
    made = user.post("/v1/payment-codes", {"device_id": device.json()["device_id"]}, key=None)
    assert made.status_code == 201, made.text
    code: str = made.json()["code"]
    return code


def owned_balance(engine: Engine, owner_type: str, owner_id: str, kind: str, asset: str) -> int:
    with db.make_session_factory(engine)() as session:
        found = session.scalars(
            select(Account.id).where(
                Account.owner_type == owner_type,
                Account.owner_id == owner_id,
                Account.kind == kind,
                Account.asset == asset,
            )
        ).first()
        if found is None:
            return 0
        return ledger.balance(session=session, account_id=found).total_minor


def merchant_balance(engine: Engine, merchant_id: str, asset: str = "HKD") -> int:
    return owned_balance(engine, "merchant", merchant_id, "merchant", asset)


def fee_balance(engine: Engine, asset: str = "HKD") -> int:
    return owned_balance(engine, "operator", "operator", "fee", asset)


def money_rows(engine: Engine) -> dict[str, int]:
    """Row counts, less the audit log (every key use and operator call is audited)."""
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
            if table.name != AuditEvent.__tablename__
        }
