"""The rate limits hold across server processes (R-SEC-9): a real ``strongroom serve --workers 2``
on a free port over the PostgreSQL test database. Requests come on fresh connections (and many
at once), so both processes answer them, and the 429 comes after the same count whichever
process answers, because the count is in the database.

Addresses: the server trusts uvicorn's default proxies (127.0.0.1, ::1), so the test, connecting
from 127.0.0.1, names each simulated client in ``X-Forwarded-For``; a client connecting from
another loopback address (127.0.0.2, not a trusted proxy) cannot pick its address that way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

LIMIT = 6
STARTUP_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The server processes uvicorn started under ``pid`` (multiprocessing's spawned children,
    not its resource tracker), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def _connected_to(pid: int, port: int) -> bool:
    """Whether ``pid`` holds a TCP connection to ``port`` (its database pool, here)."""
    inodes = set()
    for link in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


@pytest.fixture
def two_workers(pg_db: Engine) -> Iterator[tuple[str, subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = {
        **os.environ,
        "STRONGROOM_ENV": "test",
        "STRONGROOM_SECRET_KEY": "test-secret-key-0123456789-two-workers",
        "STRONGROOM_RUN_WORKER": "false",
        "STRONGROOM_MAIL__DELIVER": "false",
        "STRONGROOM_RATE_LIMITS_ENABLED": "true",
        "STRONGROOM_RATE_LIMITS__LOGIN_PER_ADDRESS__LIMIT": str(LIMIT),
        "STRONGROOM_RATE_LIMITS__LOGIN_PER_ADDRESS__WINDOW_S": "3600",
    }
    env.pop("FORWARDED_ALLOW_IPS", None)
    url = pg_db.url.render_as_string(hide_password=False)
    command = [sys.executable, "-c", "from strongroom.cli import app; app()", "serve"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2", "--no-access-log", "--database-url", url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server)
        yield base, server, pg_db.url.port or 5432
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            error = server.stderr.read().decode() if server.stderr else ""
            raise RuntimeError(f"strongroom serve exited {server.returncode}: {error[-2000:]}")
        try:
            up = httpx.get(f"{base}/health", timeout=2).status_code == 200
            if up and len(_children(server.pid)) >= 2:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("strongroom serve --workers 2 did not start")


def _login(base: str, email: str, client_address: str) -> int:
    """One failed sign-in on a fresh connection (so either process may take it)."""
    response = httpx.post(
        f"{base}/v1/auth/login",
        json={"email": email, "password": "not-the-password-1"},
        headers={"X-Forwarded-For": client_address, "Connection": "close"},
        timeout=60,
    )
    if response.status_code == 429:
        assert response.json()["error"]["code"] == "rate_limited"
        assert int(response.headers["retry-after"]) > 0
    return response.status_code


def _both_processes_answer(base: str, server: subprocess.Popen[bytes], db_port: int) -> None:
    """Read requests on fresh connections, many at once, until each process has answered one
    (it then holds a connection to the database: no worker thread runs in them)."""
    workers = _children(server.pid)
    assert len(workers) == 2, workers
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _round in range(50):
            list(pool.map(lambda _: httpx.get(f"{base}/v1/reserves/latest", timeout=30), range(16)))
            if all(_connected_to(pid, db_port) for pid in workers):
                return
    pytest.fail("one of the two processes never answered")


def test_the_limit_holds_across_two_server_processes(
    two_workers: tuple[str, subprocess.Popen[bytes], int],
) -> None:
    base, server, db_port = two_workers
    _both_processes_answer(base, server, db_port)
    emails = [f"v{n}.{uuid.uuid4().hex[:6]}@example.com" for n in range(30)]
    # one after another, 30 accounts from one address: the 429 starts right after the limit
    statuses = [_login(base, email, "203.0.113.10") for email in emails]
    assert statuses == [401] * LIMIT + [429] * (30 - LIMIT)
    # all at once from another address: exactly the limit gets through, in whichever process
    with ThreadPoolExecutor(max_workers=8) as pool:
        burst = list(pool.map(lambda email: _login(base, email, "203.0.113.11"), emails[:24]))
    assert sorted(burst) == [401] * LIMIT + [429] * (24 - LIMIT)


def test_an_untrusted_peer_cannot_choose_its_address_with_x_forwarded_for(
    two_workers: tuple[str, subprocess.Popen[bytes], int],
) -> None:
    base, _server, _db_port = two_workers
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=base, transport=transport, timeout=60) as client:
        statuses = []
        for number in range(LIMIT + 1):
            response = client.post(
                "/v1/auth/login",
                json={"email": f"x{number}@example.com", "password": "not-the-password-1"},
                headers={"X-Forwarded-For": f"198.51.100.{number + 1}"},  # a new one each time
            )
            statuses.append(response.status_code)
    assert statuses == [401] * LIMIT + [429]
