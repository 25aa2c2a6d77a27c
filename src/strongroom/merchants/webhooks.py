"""Merchant webhooks (R-MERCH-4): an outbox table written in the transaction of the event, so
nothing is sent for a rolled-back charge and nothing is lost; the worker delivers it at least
once, retried with exponential backoff until the merchant answers 2xx.

Signature (what a merchant verifies): every request carries
``Strongroom-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256(key = the merchant's webhook secret as UTF-8 bytes, message = ``t`` + ``"."`` + the
raw request body), lowercase hex. The merchant recomputes it over the body it received,
compares in constant time, and rejects a ``t`` too far from its clock (replays).
``Strongroom-Event-Id`` is the event's id (the same on every retry: deduplicate on it).

The secret (``whsec_`` + 64 hex) is derived from the server's secret key, the merchant's id and
a version (``merchants.webhook_secret_version``): nothing to store, and a new version (setting
the webhook again with ``rotate``) retires the old secret at once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.merchants.models import Merchant, WebhookEvent
from strongroom.settings import MerchantSettings

log = logging.getLogger("strongroom.merchants.webhooks")

SIGNATURE_HEADER: Final = "Strongroom-Signature"
EVENT_HEADER: Final = "Strongroom-Event-Id"
PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"

Post = Callable[[str, bytes, Mapping[str, str]], int]
"""Sends one request and answers its HTTP status (raises on a network error)."""


def secret_for(merchant: Merchant, secret_key: str) -> str:
    message = f"strongroom.merchant-webhook:{merchant.id}:{merchant.webhook_secret_version}"
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return f"whsec_{digest}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Strongroom-Signature`` header's value."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """What a merchant runs (also the tests): the header matches the body under the secret."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
        return False
    expected = sign(secret, int(parts["t"]), body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts["v1"])


def enqueue(
    *, session: Session, merchant: Merchant, event_type: str, data: Mapping[str, Any]
) -> WebhookEvent | None:
    """Add an event to the outbox in the caller's transaction (none without a webhook URL)."""
    fields = event_fields(merchant=merchant, event_type=event_type, data=data)
    if fields is None:
        return None
    row = WebhookEvent(**fields)
    session.add(row)
    return row


def event_fields(
    *, merchant: Merchant, event_type: str, data: Mapping[str, Any]
) -> dict[str, Any] | None:
    """An outbox event's columns, built ahead of the transaction that writes it (the merchant
    charges' group commit); None when the merchant has no webhook URL."""
    if not merchant.webhook_url:
        return None
    now = utcnow()
    event_id = f"evt_{uuid.uuid4().hex[:28]}"
    body = json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": now.isoformat(),
            "merchant_id": merchant.id,
            "data": dict(data),
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    return {
        "id": event_id,
        "merchant_id": merchant.id,
        "event_type": event_type,
        "url": merchant.webhook_url,
        "body": body,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def backoff_s(attempts: int, settings: MerchantSettings) -> float:
    """Seconds before the next try after ``attempts`` failed ones."""
    return float(
        min(settings.webhook_backoff_base_s * 2 ** (attempts - 1), settings.webhook_backoff_max_s)
    )


def http_post(timeout_s: float) -> Post:
    def post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
        response = httpx.post(url, content=body, headers=dict(headers), timeout=timeout_s)
        return response.status_code

    return post


def deliver_due(
    *,
    session: Session,
    settings: MerchantSettings,
    secret_key: str,
    post: Post | None = None,
    now: datetime | None = None,
) -> int:
    """Try the due events (at most ``webhook_batch_max``, taken ``FOR UPDATE SKIP LOCKED`` so
    several workers share the work); the number delivered. Each outcome is written to the row:
    delivered on a 2xx, else the next try after the backoff, ``failed`` after the last."""
    now = now or utcnow()
    post = post or http_post(settings.webhook_timeout_s)
    rows = list(
        session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.status == PENDING, WebhookEvent.next_attempt_at <= now)
            .order_by(WebhookEvent.next_attempt_at)
            .limit(settings.webhook_batch_max)
            .with_for_update(skip_locked=True)
        )
    )
    secrets: dict[str, str] = {}
    delivered = 0
    for row in rows:
        if row.merchant_id not in secrets:
            merchant = session.get_one(Merchant, row.merchant_id)
            secrets[row.merchant_id] = secret_for(merchant, secret_key)
        body = row.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secrets[row.merchant_id], int(now.timestamp()), body),
            EVENT_HEADER: row.id,
        }
        row.attempts += 1
        try:
            status = post(row.url, body, headers)
            row.last_status_code = status
            row.last_error = None if 200 <= status < 300 else f"HTTP {status}"
        except (httpx.HTTPError, OSError) as error:
            status = 0
            row.last_error = f"{type(error).__name__}"[:200]
        if 200 <= status < 300:
            row.status = DELIVERED
            row.delivered_at = now
            delivered += 1
        elif row.attempts >= settings.webhook_attempts_max:
            row.status = FAILED
        else:
            row.next_attempt_at = now + timedelta(seconds=backoff_s(row.attempts, settings))
    session.flush()
    return delivered
