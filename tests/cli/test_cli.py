"""The `strongroom` command: db upgrade, create-operator, demo, ledger check and statement."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom import db
from strongroom.cli import app
from strongroom.ledger.models import Account

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.settings import get_settings

    for name in ("STRONGROOM_DATABASE_URL", "STRONGROOM_ENV"):  # commands set them
        monkeypatch.setenv(name, "")  # remembers the value (or its absence) to restore it
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_demo_populates_and_ledger_check_passes_then_catches_tampering(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    result = runner.invoke(
        app, ["demo", "--no-serve", "--database-url", url, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "alice@demo.strongroom.local" in result.output
    assert "admin@demo.strongroom.local" in result.output
    kyc_files = [p for p in (tmp_path / "demo-kyc-documents").rglob("*") if p.is_file()]
    assert len(kyc_files) == 2, "Erin's pending primary KYC, sealed with the demo's files"
    check = runner.invoke(app, ["ledger", "check", "--database-url", url])
    assert check.exit_code == 0, check.output
    assert "ledger OK" in check.output
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(update(Account).where(Account.id == 2).values(credits_posted=1))
    broken = runner.invoke(app, ["ledger", "check", "--database-url", url])
    assert broken.exit_code == 1
    assert "FAILED" in broken.output and "account 2" in broken.output


def test_statement_csv_on_postgres(pg_db: Engine) -> None:
    from strongroom.ledger import service as ledger
    from strongroom.ledger.domain import TransferSpec

    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="BTC")
        wallet = ledger.user_wallet(session=session, user_id="u1", asset="BTC")
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=bank.id,
                credit_account_id=wallet.id,
                asset="BTC",
                amount_minor=150_000_000,
            ),
        )
    result = runner.invoke(
        app, ["ledger", "statement", str(wallet.id), "--database-url", url_of(pg_db)]
    )
    assert result.exit_code == 0, result.output
    header, row = result.output.strip().splitlines()
    assert header.startswith("entry_id,")
    assert row.split(",")[5:9] == ["BTC", "1.50000000", "0.00000000", "1.50000000"]


def test_create_operator_and_refusals(pg_db: Engine) -> None:
    args = [
        "admin",
        "create-operator",
        "--email",
        "ops@example.com",
        "--database-url",
        url_of(pg_db),
    ]
    made = runner.invoke(app, [*args, "--role", "finance"])
    assert made.exit_code == 0, made.output
    assert "role=finance" in made.output and "password:" in made.output
    again = runner.invoke(app, [*args, "--role", "finance"])
    assert again.exit_code == 2 and "email_taken" in again.output
    bad_role = runner.invoke(
        app,
        [
            "admin",
            "create-operator",
            "--email",
            "x@example.com",
            "--role",
            "superuser",
            "--database-url",
            url_of(pg_db),
        ],
    )
    assert bad_role.exit_code == 2 and "invalid_role" in bad_role.output


def test_db_upgrade_is_repeatable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
        assert result.exit_code == 0, result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_starts_on_sqlite_and_answers_health(tmp_path: Path) -> None:
    """What the README's first command does, minus the install: the server on SQLite."""
    port = _free_port()
    env = os.environ | {"STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "demo",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{tmp_path / 's.sqlite3'}",
            "--data-dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        assert response.json() == {"status": "ok"}
        login = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/login",
            json={"email": "alice@demo.strongroom.local", "password": "demo-password-1"},
        )
        token = login.json()["token"]
        balances = httpx.get(
            f"http://127.0.0.1:{port}/v1/balances", headers={"Authorization": f"Bearer {token}"}
        ).json()["balances"]
        assert {b["asset"]: b["total"] for b in balances} == {"BTC": "0.00200000", "HKD": "899.50"}
    finally:
        process.terminate()
        process.wait(timeout=20)
