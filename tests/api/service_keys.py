"""Service keys for tests (R-SEC-10): made as ``strongroom admin create-api-key`` makes them,
and a caller that sends one in ``X-Api-Key``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import api_keys


def make_key(engine: Engine, scope: str = api_keys.LEDGER, name: str | None = None) -> str:
    """A new live key with ``scope``, its secret as it is shown once."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        issued = api_keys.create(
            session=session, name=name or f"test-{uuid.uuid4().hex[:8]}", scope=scope
        )
    return issued.key


def foreign_scope_key(engine: Engine, scope: str = "merchant") -> str:
    """A key of another scope (a merchant terminal's key, a later issue, stored in the same
    table): written straight to the table, since no command makes one yet."""
    key = api_keys.PREFIX + uuid.uuid4().hex + uuid.uuid4().hex
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.add(
            api_keys.ApiKey(
                id="key_" + uuid.uuid4().hex[:16],
                name=f"terminal-{uuid.uuid4().hex[:6]}",
                scope=scope,
                owner_type="merchant",
                owner_id="m_test",
                key_hash=api_keys.digest(key),
                key_prefix=key[: api_keys.SHOWN_CHARS],
                created_at=db.utcnow(),
            )
        )
    return key


def revoked_key(engine: Engine) -> str:
    key = make_key(engine)
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        found = session.query(api_keys.ApiKey).filter_by(key_hash=api_keys.digest(key)).one()
        api_keys.revoke(session=session, key_id=found.id)
    return key


@dataclass
class Integration:
    """An integration calling the raw ledger API with its key."""

    client: TestClient | httpx.Client
    key: str

    def post(self, path: str, body: object) -> httpx.Response:
        return self.client.post(path, json=body, headers={"X-Api-Key": self.key})

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path, headers={"X-Api-Key": self.key})


def ledger_integration(client: TestClient | httpx.Client, engine: Engine) -> Integration:
    return Integration(client, make_key(engine))
