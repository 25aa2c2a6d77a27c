"""`strongroom admin create-api-key / list-api-keys / revoke-api-key` (R-SEC-10): a service key
is printed once and stored only as its SHA-256; it opens the raw ledger writes until it is
revoked; each use is in the audit log as the key."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom import db
from strongroom.app import create_app
from strongroom.cli import app
from strongroom.identity import api_keys
from strongroom.identity.models import AuditEvent
from tests.api.conftest import make_settings

runner = CliRunner()
ACCOUNT = {
    "owner_type": "operator",
    "owner_id": "settlement",
    "kind": "float",
    "asset": "HKD",
    "allow_negative": True,
}


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.settings import get_settings

    for name in ("STRONGROOM_DATABASE_URL", "STRONGROOM_ENV"):  # commands set them
        monkeypatch.setenv(name, "")  # remembers the value (or its absence) to restore it
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def cli(engine: Engine, *args: str) -> tuple[int, str, str]:
    url = engine.url.render_as_string(hide_password=False)
    result = runner.invoke(app, ["admin", *args, "--database-url", url])
    return result.exit_code, result.stdout, result.output


def test_a_key_is_shown_once_stored_hashed_works_and_stops_when_revoked(pg_db: Engine) -> None:
    code, out, _ = cli(pg_db, "create-api-key", "--scope", "ledger", "--name", "settlement")
    assert code == 0, out
    key = re.search(r"^api_key: (srk_[A-Za-z0-9_-]{43})$", out, re.M).group(1)  # type: ignore[union-attr]
    key_id = re.search(r"api key (key_[0-9a-f]{16}) name=settlement scope=ledger", out).group(1)  # type: ignore[union-attr]
    with pg_db.connect() as connection:  # nowhere in the database: only its SHA-256
        dump = str(connection.execute(text("SELECT * FROM api_keys")).all())
        dump += str(connection.execute(text("SELECT details_json FROM audit_events")).all())
    assert key not in dump and key[4:] not in dump and api_keys.digest(key) in dump
    _, listed, _ = cli(pg_db, "list-api-keys")
    assert re.search(
        rf"^{key_id}\tsettlement\tledger\tplatform:platform\t{key[:12]}\.\.\.\t", listed, re.M
    )
    assert listed.rstrip().endswith("\tlive") and key not in listed

    with TestClient(create_app(make_settings(pg_db), pg_db)) as client:
        made = client.post("/v1/admin/ledger/accounts", json=ACCOUNT, headers={"X-Api-Key": key})
        assert made.status_code == 201, made.text
        code, out, _ = cli(pg_db, "revoke-api-key", key_id)
        assert code == 0 and f"api key {key_id} revoked" in out
        refused = client.post("/v1/admin/ledger/accounts", json=ACCOUNT, headers={"X-Api-Key": key})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    _, listed, _ = cli(pg_db, "list-api-keys")
    assert "\trevoked 20" in listed
    with db.make_session_factory(pg_db)() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        used = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "api_key.request")
        ).one()
    assert actions == ["api_key.created", "api_key.request", "api_key.revoked"]
    assert (used.actor_id, used.actor_role) == (key_id, "api_key")


def test_create_and_revoke_refusals(pg_db: Engine) -> None:
    code, _, output = cli(pg_db, "create-api-key", "--scope", "everything", "--name", "x")
    assert code == 2 and "invalid_scope" in output
    code, _, output = cli(pg_db, "create-api-key", "--scope", "ledger", "--name", "bad/name")
    assert code == 2 and "invalid_name" in output
    assert cli(pg_db, "create-api-key", "--scope", "ledger", "--name", "ci")[0] == 0
    code, _, output = cli(pg_db, "create-api-key", "--scope", "ledger", "--name", "ci")
    assert code == 2 and "api_key_name_taken" in output
    code, _, output = cli(pg_db, "revoke-api-key", "key_0000000000000000")
    assert code == 2 and "api_key_not_found" in output
    with db.make_session_factory(pg_db)() as session:
        (row,) = session.scalars(select(api_keys.ApiKey)).all()
    assert cli(pg_db, "revoke-api-key", row.id)[0] == 0
    assert cli(pg_db, "revoke-api-key", row.id)[0] == 0  # twice: still revoked, no error
    assert cli(pg_db, "create-api-key", "--scope", "ledger", "--name", "ci")[0] == 0  # reusable
