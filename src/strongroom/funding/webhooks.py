"""Connectors' signed notifications (``POST /v1/webhooks/{connector}``, R-FUND-1).

**Signature.** The connector sends two headers:

- ``Strongroom-Timestamp``: the time of sending, whole seconds since the Unix epoch;
- ``Strongroom-Signature``: ``sha256=`` and the lowercase hex HMAC-SHA256, keyed with the
  connector's secret (``funding.<connector>.webhook_secret``, e.g.
  ``STRONGROOM_FUNDING__FPS__WEBHOOK_SECRET``), of the ASCII timestamp, a ``.``, and the raw
  body bytes exactly as sent.

Refusals: a missing header 400 ``signature_missing``; a timestamp that is not a number 400
``invalid_timestamp``; a wrong signature 401 ``invalid_signature`` (checked in constant time,
before anything else is read); a timestamp more than ``funding.webhook_tolerance_s`` (300 s)
from the server's clock, either way, 400 ``timestamp_outside_window`` (a replayed old
notification); a connector that does not exist or is switched off 404 ``unknown_connector``.

**Body** (JSON, at most ``funding.webhook_body_max_bytes``)::

    {"event_id": "evt_1", "reference": "SR7K...", "status": "confirmed" | "failed",
     "amount": "100.00", "asset": "HKD", "reason": "optional, for a failure"}

``reference`` is what the top-up's instructions showed (the FPS payment reference, the card
session id); ``amount`` is what actually arrived, and that is what is credited. A malformed body
is 422 ``invalid_webhook``; an unknown reference 404 ``topup_not_found``; an asset other than
the top-up's 422 ``asset_mismatch``; a confirmation after a failure 409
``topup_already_failed``. Everything else answers 200 ``{outcome, topup_id, status}``:
``credited``, ``duplicate`` (nothing moved), ``failed``, ``ignored`` (a failure after the
confirmation). Every delivery, refused or not, is stored raw in
``funding_webhook_deliveries`` (the headers that matter, the body, whether the signature held,
the outcome), kept even when the request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.db import utcnow
from strongroom.errors import DomainError, NotFound, Unauthorized, ValidationFailed
from strongroom.funding import connectors, topups
from strongroom.funding.models import WebhookDelivery
from strongroom.money import parse_amount
from strongroom.settings import Settings

TIMESTAMP_HEADER: Final = "Strongroom-Timestamp"
SIGNATURE_HEADER: Final = "Strongroom-Signature"
SIGNATURE_SCHEME: Final = "sha256="
STORED_HEADERS: Final = (TIMESTAMP_HEADER, SIGNATURE_HEADER, "content-type", "user-agent")
HEADER_MAX_CHARS: Final = 200
STATUSES: Final = ("confirmed", "failed")
FIELD_MAX_CHARS: Final = 64


class BadSignature(DomainError):
    status = 400


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``Strongroom-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_SCHEME + mac.hexdigest()


def verify_signature(
    *, secret: str, timestamp: str | None, signature: str | None, body: bytes
) -> int:
    """The signed timestamp, once the signature holds (see the module's docstring)."""
    if not timestamp or not signature:
        raise BadSignature(
            f"send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}", code="signature_missing"
        )
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise BadSignature(
            f"{TIMESTAMP_HEADER} is whole seconds since the Unix epoch", code="invalid_timestamp"
        )
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise Unauthorized("the signature does not match", code="invalid_signature")
    return int(timestamp)


def check_window(*, sent_at: int, now: datetime, tolerance_s: int) -> None:
    """A replayed old notification (or one from a clock far off) is refused."""
    if abs(now.timestamp() - sent_at) > tolerance_s:
        raise BadSignature(
            f"the timestamp is more than {tolerance_s} s from now: a replay is refused",
            code="timestamp_outside_window",
            tolerance_s=tolerance_s,
        )


@dataclass(frozen=True, slots=True)
class Notification:
    event_id: str
    reference: str
    status: str
    amount: str
    asset: str
    reason: str


def parse(body: bytes) -> Notification:
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise _invalid("the body is not JSON") from error
    if not isinstance(data, dict):
        raise _invalid("the body is a JSON object")
    fields: dict[str, str] = {}
    for name in ("event_id", "reference", "status", "amount", "asset"):
        value = data.get(name)
        if not isinstance(value, str) or not value or len(value) > FIELD_MAX_CHARS:
            raise _invalid(f"{name}: a string of 1-{FIELD_MAX_CHARS} characters", field=name)
        fields[name] = value
    if fields["status"] not in STATUSES:
        raise _invalid("status: confirmed or failed", field="status")
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise _invalid("reason: a string", field="reason")
    return Notification(reason=reason[:FIELD_MAX_CHARS] or "connector_failed", **fields)


def _invalid(message: str, **details: Any) -> ValidationFailed:
    return ValidationFailed(message, code="invalid_webhook", **details)


@dataclass(frozen=True, slots=True)
class Received:
    outcome: str
    topup_id: str
    status: str


def handle(
    *,
    session: Session,
    connector: str,
    headers: dict[str, str],
    body: bytes,
    remote_address: str | None,
    settings: Settings,
    now: datetime | None = None,
) -> Received:
    """Check, store and apply one notification (see the module's docstring)."""
    now = now or utcnow()
    stored = {
        name: headers[name.lower()][:HEADER_MAX_CHARS]
        for name in STORED_HEADERS
        if name.lower() in headers
    }
    limit = settings.funding.webhook_body_max_bytes
    delivery = {
        "connector": _storable(connector[:32]),
        "received_at": now,
        "remote_address": _storable((remote_address or "")[:64]) or None,
        "headers_json": json.dumps(stored, sort_keys=True),
        "body": _storable(body[:limit].decode("utf-8", errors="replace")),
    }
    signature_ok, topup_id = False, None
    try:
        secret = connectors.webhook_secret(connector, settings)
        if secret is None:
            raise NotFound(
                "no such connector", code="unknown_connector", connectors=_connectors(settings)
            )
        sent_at = verify_signature(
            secret=secret,
            timestamp=headers.get(TIMESTAMP_HEADER.lower()),
            signature=headers.get(SIGNATURE_HEADER.lower()),
            body=body,
        )
        signature_ok = True
        check_window(sent_at=sent_at, now=now, tolerance_s=settings.funding.webhook_tolerance_s)
        if len(body) > limit:
            raise _invalid(f"the body is at most {limit} bytes")
        note = parse(body)
        record = topups.by_reference(session=session, channel=connector, reference=note.reference)
        topup_id = record.id
        if note.asset != record.asset:
            raise ValidationFailed(
                f"this top-up is in {record.asset}", code="asset_mismatch", asset=record.asset
            )
        if note.status == "failed":
            applied = topups.fail(session=session, topup=record, reason=note.reason, now=now)
        else:
            scale = settings.asset_registry().get(record.asset).scale
            try:
                received = parse_amount(note.amount, scale)
            except DomainError as error:
                raise _invalid(f"amount: {error.message}", field="amount") from error
            applied = topups.confirm(
                session=session, topup=record, received_minor=received, now=now, settings=settings
            )
    except DomainError as refused:
        outcome = f"refused:{refused.code}"[:40]
        ok, kept_topup_id = signature_ok, topup_id

        def write(kept: Session) -> None:
            kept.add(
                WebhookDelivery(
                    **delivery, signature_ok=ok, outcome=outcome, topup_id=kept_topup_id
                )
            )
            kept.flush()

        db.keep(session, write)
        raise
    session.add(
        WebhookDelivery(
            **delivery, signature_ok=True, outcome=applied.outcome, topup_id=applied.topup.id
        )
    )
    session.flush()
    return Received(applied.outcome, applied.topup.id, topups.api_status(applied.topup))


def _storable(text: str) -> str:
    """``text`` as a database text column takes it (PostgreSQL refuses NUL characters)."""
    return text.replace("\x00", "\ufffd")


def _connectors(settings: Settings) -> list[str]:
    return [
        name for name in connectors.WEBHOOK_CONNECTORS if connectors.webhook_secret(name, settings)
    ]


DELIVERIES_PAGE_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[WebhookDelivery]
    next_before: int | None


def deliveries(
    *, session: Session, connector: str | None = None, before: int | None = None, limit: int = 50
) -> DeliveryPage:
    """Stored deliveries newest first, ``limit`` a page (keyset: ids below ``before``)."""
    limit = max(1, min(limit, DELIVERIES_PAGE_MAX))
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit + 1)
    if connector:
        query = query.where(WebhookDelivery.connector == connector)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(rows, rows[-1].id if more and rows else None)
