"""``strongroom serve`` as a stranger runs it (R-SEC-11): a real subprocess with environment
variables. It prints the environment and the database's kind (never a password); production
(the default) with demo settings exits non-zero with one line saying what to set, no traceback,
before it touches the database; a complete production configuration starts and answers."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from strongroom.settings import ProductionRefused, Settings

START_WAIT_S = 60
RUN_WAIT_S = 60
GOOD = {
    "STRONGROOM_SECRET_KEY": secrets.token_urlsafe(48),
    "STRONGROOM_VAULT_KEY": secrets.token_urlsafe(48),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The machine's environment without any STRONGROOM_* setting, plus ``variables``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    return clean | {"STRONGROOM_DATABASE_URL": url} | variables


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "strongroom.cli", "serve", "--port", str(port)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _refused(env: dict[str, str]) -> tuple[str, str]:
    process = _serve(env, _free_port())
    stdout, stderr = process.communicate(timeout=RUN_WAIT_S)
    assert process.returncode == 2, (stdout, stderr)
    return stdout, stderr


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({}, "STRONGROOM_SECRET_KEY"),  # a stranger's `strongroom serve`: production, defaults
        ({"STRONGROOM_VAULT_KEY": GOOD["STRONGROOM_VAULT_KEY"]}, "STRONGROOM_SECRET_KEY"),
        ({"STRONGROOM_SECRET_KEY": GOOD["STRONGROOM_SECRET_KEY"]}, "STRONGROOM_VAULT_KEY"),
        (GOOD | {"STRONGROOM_FUNDING__SANDBOX_ENABLED": "true"}, "SANDBOX_ENABLED"),
        (GOOD | {"STRONGROOM_DEMO_INBOX": "true"}, "STRONGROOM_DEMO_INBOX"),
        (GOOD | {"STRONGROOM_RATE_LIMITS__ENABLED": "false"}, "RATE_LIMITS"),
        (GOOD | {"STRONGROOM_ENV": "production", "STRONGROOM_SECRET_KEY": "s" * 20}, "SECRET"),
    ],
)
def test_serve_refuses_production_with_demo_settings_in_one_line(
    tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    stdout, stderr = _refused(_environment(tmp_path, **variables))
    assert "environment: production" in stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert named in lines[0] and lines[0].startswith("strongroom serve: refusing to run")
    assert "Traceback" not in stderr + stdout
    assert not (tmp_path / "serve.sqlite3").exists(), "refused before touching the database"


def _wait_for_health(process: subprocess.Popen[str], port: int) -> httpx.Response:
    deadline = time.monotonic() + START_WAIT_S
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"server exited with {process.returncode}: {out}{err}")
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    stdout, _ = process.communicate(timeout=RUN_WAIT_S)
    return stdout


def test_serve_starts_with_a_complete_production_configuration(tmp_path: Path) -> None:
    port = _free_port()
    process = _serve(_environment(tmp_path, **GOOD), port)
    try:
        assert _wait_for_health(process, port).json() == {"status": "ok"}
        topup = httpx.post(  # no sandbox: unauthenticated first, but the route exists
            f"http://127.0.0.1:{port}/v1/topups",
            json={"asset": "HKD", "amount": "1.00", "channel": "sandbox"},
        )
        assert topup.status_code == 401
    finally:
        stdout = _stop(process)
    assert "environment: production, database: sqlite at " in stdout


def test_serve_prints_the_database_kind_never_its_password(pg_db: Engine, tmp_path: Path) -> None:
    """PostgreSQL with a password in the URL (the test server trusts, so it is ignored)."""
    password = "hunter2-" + secrets.token_hex(8)
    url = pg_db.url.set(password=password).render_as_string(hide_password=False)
    port = _free_port()
    env = _environment(tmp_path, STRONGROOM_ENV="development") | {"STRONGROOM_DATABASE_URL": url}
    process = _serve(env, port)
    try:
        _wait_for_health(process, port)
    finally:
        stdout = _stop(process)
    assert f"environment: development, database: postgresql on {pg_db.url.host}" in stdout
    assert password not in stdout


def test_create_app_refuses_production_with_demo_settings(tmp_path: Path) -> None:
    """A library user who skips the CLI gets the same refusal."""
    url = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    with pytest.raises(ProductionRefused, match="STRONGROOM_SECRET_KEY"):
        create_app(Settings(env="production", database_url=url, run_worker=False))
    sandboxed = Settings(
        env="production",
        database_url=url,
        run_worker=False,
        secret_key=GOOD["STRONGROOM_SECRET_KEY"],
        vault_key=GOOD["STRONGROOM_VAULT_KEY"],
        funding={"sandbox_enabled": True},  # type: ignore[arg-type]
    )
    with pytest.raises(ProductionRefused, match="SANDBOX_ENABLED"):
        create_app(sandboxed)
