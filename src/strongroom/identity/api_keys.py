"""Service keys (R-SEC-10): how an integration, not a person, calls the API (``X-Api-Key``).

A key is ``srk_`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). It is
shown once, when it is made (``strongroom admin create-api-key --scope ledger --name N``); the
table keeps only its SHA-256 (a fast hash is enough for a key this random: there is nothing to
guess) and its first characters, so a list can tell keys apart. A key has one ``scope`` (what it
may call: ``ledger`` opens the raw ledger writes) and an owner (``owner_type``/``owner_id``:
``platform`` for the operator's own integrations; merchant terminal keys, a later issue, are
rows of the same table with ``owner_type="merchant"`` and their own scope). Revoking is
immediate and final. Every use is one audit event (``record_use``: who is the key's id and
name, what the route, when, from where), written by the caller as a kept record.

The table lives in this module rather than ``identity/models.py`` because nothing else in
identity reads it; ``strongroom.models`` imports it with the rest.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Index, String, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from strongroom.db import Base, UTCDateTime, utcnow
from strongroom.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from strongroom.identity import audit
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User

PLATFORM: Final = "platform"
"""The owner of the operator's own integrations' keys."""
LEDGER: Final = "ledger"
"""The scope of the raw ledger writes (``POST /v1/admin/ledger/transfers``, ``.../accounts``)."""
STORE_CASH: Final = "store_cash"
"""The scope of a convenience store's terminal: it confirms the cash it took for a top-up
barcode (``POST /v1/topups/store-cash/confirmations``)."""
MERCHANT: Final = "merchant"
"""The scope of a merchant's terminal key (``owner_type`` ``merchant``, ``owner_id`` the
merchant's id; its role is ``merchants.models.MerchantKey``)."""
SCOPES: Final = {LEDGER: PLATFORM, STORE_CASH: PLATFORM, MERCHANT: MERCHANT}
"""The scopes a key can be made with, and the owner type each belongs to."""
PREFIX: Final = "srk_"
KEY_CHARS_MAX: Final = 128
"""Longer ``X-Api-Key`` values are refused before they are hashed."""
SHOWN_CHARS: Final = 12
"""How much of a key is kept in clear to tell keys apart (``srk_`` and 8 random characters)."""
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}")
LIST_MAX: Final = 500
ACTOR_ROLE: Final = "api_key"
"""``audit_events.actor_role`` of what a key did (its ``actor_id`` is the key's id)."""


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index(
            "uq_api_keys_live_name",
            "owner_type",
            "owner_id",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
            sqlite_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(32))
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``key`` is the only copy of the secret there will ever be."""

    id: str
    name: str
    scope: str
    key: str


@dataclass(frozen=True, slots=True)
class Caller:
    """The integration behind a request, as the guard lets it in (plain values, no row)."""

    id: str
    name: str
    scope: str
    owner_type: str
    owner_id: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(
    *,
    session: Session,
    name: str,
    scope: str,
    owner_id: str = PLATFORM,
    actor: User | None = None,
    origin: Origin = NOWHERE,
) -> IssuedKey:
    """A new key with ``scope``; ``name`` says what uses it (unique among live keys)."""
    if scope not in SCOPES:
        raise ValidationFailed(
            f"scope must be one of {', '.join(SCOPES)}", code="invalid_scope", scopes=list(SCOPES)
        )
    name = name.strip()
    if not NAME.fullmatch(name):
        raise ValidationFailed(
            "name: 1-64 letters, digits, space or _ . : - (starting with a letter or digit)",
            code="invalid_name",
        )
    owner_type = SCOPES[scope]
    if owner_type != PLATFORM and owner_id == PLATFORM:
        raise ValidationFailed(
            f"a {scope} key belongs to one {owner_type}: make it there", code="invalid_scope"
        )
    if _live_named(session, owner_type, owner_id, name) is not None:
        raise Conflict("a live key has this name", code="api_key_name_taken", name=name)
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id="key_" + secrets.token_hex(8),
        name=name,
        scope=scope,
        owner_type=owner_type,
        owner_id=owner_id,
        key_hash=digest(key),
        key_prefix=key[:SHOWN_CHARS],
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    _record(session, "api_key.created", row, actor=actor, origin=origin)
    return IssuedKey(id=row.id, name=name, scope=scope, key=key)


def _live_named(session: Session, owner_type: str, owner_id: str, name: str) -> str | None:
    return session.scalars(
        select(ApiKey.id).where(
            ApiKey.owner_type == owner_type,
            ApiKey.owner_id == owner_id,
            ApiKey.name == name,
            ApiKey.revoked_at.is_(None),
        )
    ).first()


def authenticate(*, session: Session, key: str | None, scope: str) -> Caller:
    """The live key behind ``key`` if it holds ``scope``: ``api_key_required`` (401) without
    one, ``invalid_api_key`` (401) for an unknown or revoked key, ``insufficient_scope`` (403)
    for a key of another scope."""
    if not key:
        raise Unauthorized(
            "this route takes a service key: send X-Api-Key", code="api_key_required"
        )
    found = None
    if len(key) <= KEY_CHARS_MAX and key.startswith(PREFIX):
        found = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest(key))).first()
    if found is None or found.revoked_at is not None:
        raise Unauthorized("the API key is not valid", code="invalid_api_key")
    if found.scope != scope:
        raise Forbidden(
            f"this route needs a key with the {scope} scope", code="insufficient_scope", scope=scope
        )
    return Caller(
        id=found.id,
        name=found.name,
        scope=found.scope,
        owner_type=found.owner_type,
        owner_id=found.owner_id,
    )


def revoke(
    *, session: Session, key_id: str, actor: User | None = None, origin: Origin = NOWHERE
) -> ApiKey:
    """Stop a key at once (``api_key_not_found`` if there is none; revoking twice is a no-op)."""
    row = session.get(ApiKey, key_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no API key {key_id}", code="api_key_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        _record(session, "api_key.revoked", row, actor=actor, origin=origin)
    return row


def listing(*, session: Session, limit: int = LIST_MAX) -> list[ApiKey]:
    """Keys newest first, live and revoked (never their secret: there is none to show)."""
    return list(
        session.scalars(
            select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id).limit(min(limit, LIST_MAX))
        )
    )


def record_use(
    *,
    session: Session,
    caller: Caller,
    method: str,
    route: str,
    path: str,
    query: str = "",
    origin: Origin = NOWHERE,
) -> None:
    """One audit event per request made with a key: who (the key), what, when, from where."""
    event = audit.record(
        session=session,
        category=audit.OPERATOR,
        action="api_key.request",
        origin=origin,
        details={
            "key_name": caller.name,
            "scope": caller.scope,
            "method": method,
            "route": route[:200],
            "path": path[:300],
            "query": query[:500],
        },
    )
    event.actor_id, event.actor_role = caller.id, ACTOR_ROLE
    session.flush()


def _record(
    session: Session, action: str, row: ApiKey, *, actor: User | None, origin: Origin
) -> None:
    audit.record(
        session=session,
        category=audit.OPERATOR,
        action=action,
        actor=actor,
        origin=origin,
        details={
            "key_id": row.id,
            "name": row.name,
            "scope": row.scope,
            "owner_type": row.owner_type,
            "owner_id": row.owner_id,
        },
    )
