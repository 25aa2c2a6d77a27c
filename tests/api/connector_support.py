"""What the top-up connector tests share: settings with every connector switched on, a signed
webhook as a connector sends it, and the end-of-test checks (ledger check, reconcile)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.funding import webhooks
from strongroom.funding.models import Topup, WebhookDelivery
from strongroom.funding.reconcile import Report, reconcile
from strongroom.ledger import reports
from strongroom.settings import Settings, WebhookConnectorSettings
from tests.api.conftest import make_settings

FPS_SECRET = "fps-webhook-secret-0123456789"
CARD_SECRET = "card-webhook-secret-0123456789"
SECRETS = {"fps": FPS_SECRET, "card": CARD_SECRET}


def connector_settings(engine: Engine, **funding: Any) -> Settings:
    """The tests' settings with ``fps``, ``card`` and ``store_cash`` switched on."""
    settings = make_settings(engine)
    updated = settings.funding.model_copy(
        update={
            "fps": WebhookConnectorSettings(webhook_secret=FPS_SECRET, validity_s=24 * 3600),
            "card": WebhookConnectorSettings(webhook_secret=CARD_SECRET, validity_s=30 * 60),
            "store_cash_enabled": True,
            **funding,
        }
    )
    return settings.model_copy(update={"funding": updated})


def notification(
    reference: str,
    status: str = "confirmed",
    amount: str = "100.00",
    asset: str = "HKD",
    event_id: str = "evt_1",
) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "reference": reference,
            "status": status,
            "amount": amount,
            "asset": asset,
        }
    ).encode()


def send_webhook(
    client: TestClient | httpx.Client,
    connector: str,
    body: bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """POST a notification signed as the connector signs it (``funding.webhooks``)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = secret if secret is not None else SECRETS.get(connector, "none")
    headers = {
        "Content-Type": "application/json",
        webhooks.TIMESTAMP_HEADER: stamp,
        webhooks.SIGNATURE_HEADER: signature or webhooks.sign(key, stamp, body),
    }
    return client.post(f"/v1/webhooks/{connector}", content=body, headers=headers)


def ledger_ok(engine: Engine) -> None:
    with db.make_session_factory(engine)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def reconciled(engine: Engine, settings: Settings) -> Report:
    with db.make_session_factory(engine)() as session:
        return reconcile(session=session, settings=settings)


def settled(engine: Engine, settings: Settings) -> None:
    """The end of every test: ``strongroom ledger check`` passes and reconcile finds no break."""
    ledger_ok(engine)
    report = reconciled(engine, settings)
    assert report.ok, report.as_dict()


def topup_row(engine: Engine, topup_id: str) -> Topup:
    with db.make_session_factory(engine)() as session:
        found = session.get(Topup, topup_id)
        assert found is not None
        session.expunge(found)
        return found


def deliveries(engine: Engine) -> list[WebhookDelivery]:
    with db.make_session_factory(engine)() as session:
        rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        for row in rows:
            session.expunge(row)
        return rows
