"""`strongroom admin create-operator --with-totp-secret`: 2FA is on at once and the printed
secret signs the operator in and opens the operator endpoints."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom.app import create_app
from strongroom.cli import app as cli
from strongroom.settings import Settings, get_settings

runner = CliRunner()
VAULT_KEY = "cli-test-vault-key-0123456789-abcdefghij"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("STRONGROOM_DATABASE_URL", raising=False)
    # the CLI seals the TOTP seed with the vault key the app below opens it with (R-SEC-11)
    monkeypatch.setenv("STRONGROOM_VAULT_KEY", VAULT_KEY)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_create_operator_with_totp_secret(pg_db: Engine) -> None:
    url = pg_db.url.render_as_string(hide_password=False)
    made = runner.invoke(
        cli,
        [
            "admin",
            "create-operator",
            "--email",
            "ops@example.com",
            "--role",
            "admin",
            "--password",
            "operator-pass-77",
            "--with-totp-secret",
            "--database-url",
            url,
        ],
    )
    assert made.exit_code == 0, made.output
    secret = re.search(r"^totp_secret: ([A-Z2-7]+)$", made.output, re.M)
    assert secret is not None
    assert re.search(r"^otpauth_uri: otpauth://totp/", made.output, re.M)
    assert len(re.search(r"^recovery_codes: (.+)$", made.output, re.M).group(1).split()) == 10
    settings = Settings(
        env="test",
        database_url=url,
        run_worker=False,
        secret_key="test-secret-key-0123456789",
        vault_key=VAULT_KEY,
    )
    with TestClient(create_app(settings, pg_db)) as client:
        login = {"email": "ops@example.com", "password": "operator-pass-77"}
        assert client.post("/v1/auth/login", json=login).json()["error"]["code"] == ("otp_required")
        signed = client.post(
            "/v1/auth/login", json=login | {"otp": pyotp.TOTP(secret.group(1)).now()}
        )
        assert signed.status_code == 200, signed.text
        headers = {"Authorization": f"Bearer {signed.json()['token']}"}
        assert client.get("/v1/admin/audit", headers=headers).status_code == 200


def test_create_operator_without_the_option_has_no_2fa(pg_db: Engine) -> None:
    url = pg_db.url.render_as_string(hide_password=False)
    made = runner.invoke(
        cli,
        [
            "admin",
            "create-operator",
            "--email",
            "ops2@example.com",
            "--role",
            "support",
            "--database-url",
            url,
        ],
    )
    assert made.exit_code == 0, made.output
    assert "totp_secret" not in made.output
