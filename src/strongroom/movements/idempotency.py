"""Idempotency keys for money-moving requests (SPEC P3).

The key row is inserted first, in the same transaction as the work. A concurrent request with the
same key blocks on the unique key until the first commits, then finds its stored response. Only
successful results are stored: a refused request moved nothing, so a retry simply runs again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from strongroom.db import Base, UTCDateTime, utcnow
from strongroom.errors import Conflict, ValidationFailed

KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:-]+")


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str | None, *, max_chars: int) -> str:
    if key is None or key == "":
        raise ValidationFailed(
            "this request needs an Idempotency-Key header", code="idempotency_key_required"
        )
    if len(key) > max_chars or not KEY_PATTERN.fullmatch(key):
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{max_chars} of A-Z a-z 0-9 _ . : -",
            code="invalid_idempotency_key",
        )
    return key


def run_once(
    *,
    session: Session,
    scope: str,
    key: str,
    fingerprint: str,
    work: Callable[[], tuple[int, dict[str, Any]]],
) -> tuple[int, dict[str, Any]]:
    """Run ``work`` once per (scope, key); a replay returns the stored (status, body)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    claimed = session.execute(
        insert(IdempotencyKey)
        .values(scope=scope, key=key, request_hash=fingerprint, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    ).first()
    if claimed is None:
        row = session.execute(
            select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        ).scalar_one()
        if row.request_hash != fingerprint:
            raise Conflict(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
            )
        if row.status_code is None or row.response_json is None:
            raise Conflict(
                "a request with this Idempotency-Key is still in progress",
                code="idempotency_key_in_progress",
            )
        return row.status_code, json.loads(row.response_json)
    status, body = work()
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(status_code=status, response_json=json.dumps(body))
    )
    return status, body
