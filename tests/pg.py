"""Find or start a PostgreSQL server for the tests.

Order: ``STRONGROOM_TEST_PG`` (a server URL), then a server on 127.0.0.1:5432 (user postgres),
then a throwaway cluster started from the installed PostgreSQL binaries (initdb + pg_ctl) in a
temporary directory. With ``CI=true`` a missing server is a failure, never a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
INSTALL_HINT = (
    "PostgreSQL is needed for the tests: install it (Debian/Ubuntu: "
    "`apt-get install postgresql`), or set STRONGROOM_TEST_PG to a server URL."
)


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_url() -> Iterator[str]:
    """Yield an admin URL for a PostgreSQL server, starting a throwaway one if needed."""
    explicit = os.environ.get("STRONGROOM_TEST_PG")
    if explicit:
        yield explicit
        return
    if _reachable("127.0.0.1", 5432):
        yield DEFAULT_URL
        return
    binaries = _binaries()
    if binaries is None:
        raise RuntimeError(INSTALL_HINT)
    with _throwaway_cluster(binaries) as url:
        yield url


@contextmanager
def _throwaway_cluster(binaries: Path) -> Iterator[str]:
    workdir = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
    data, port = workdir / "data", _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(workdir, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(workdir / "log"),
        "-w",
        "-o",
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
