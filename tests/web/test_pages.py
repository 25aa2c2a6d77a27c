"""The reserves pages over HTTP, without a browser: headers, what the HTML may and may not
contain under the CSP, escaping, order, the per-audit endpoint and the packaged files."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.errors import InvariantViolation, ValidationFailed
from strongroom.reserves import pages
from strongroom.reserves import service as reserves
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.service import ReserveLine
from strongroom.reserves.snapshot import Snapshot

from .conftest import AUDIT_ID, Published

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "strongroom"


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


def test_pages_send_the_security_headers(http: httpx.Client, published: Published) -> None:
    for path in ("/reserves", "/reserves/verify", f"/reserves/verify?audit={AUDIT_ID}"):
        response = http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["content-security-policy"] == (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_html_has_no_inline_script_style_or_external_resource(
    http: httpx.Client, published: Published
) -> None:
    for path in ("/reserves", "/reserves/verify"):
        html = http.get(path).text
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
        assert all(re.search(r'\bsrc="/static/', attrs) and not body for attrs, body in scripts)
        assert "<style" not in html
        assert not re.search(r"\sstyle=", html)
        assert not re.search(r"\son[a-z]+=", html)
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
        for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
            assert http.get(url).status_code == 200, url


def test_static_files(http: httpx.Client) -> None:
    kinds = {
        "por_v1.js": "text/javascript",
        "verify.js": "text/javascript",
        "reserves.css": "text/css",
    }
    for name, kind in kinds.items():
        response = http.get(f"/static/reserves/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
        version = hashlib.sha256(response.content).hexdigest()[:12]
        assert pages.static_url(f"reserves/{name}") == f"/static/reserves/{name}?v={version}"
    assert http.get("/static/reserves/missing.js").status_code == 404
    assert http.get("/static/reserves/%2e%2e/pages.py").status_code == 404
    with pytest.raises(InvariantViolation):
        pages.static_url("../pages.py")


def test_the_list_shows_each_audit_newest_first_and_escapes_text(
    http: httpx.Client, published: Published, pg_db: Engine, tmp_path: Path
) -> None:
    older = build(
        Snapshot.from_mapping({"HKD": 2}, {"someone": {"HKD": 5_00}}),
        tmp_path / "older",
        secret=bytes(range(32)),
        audit_id="2026-11-01",
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        options=BuildOptions(workers=1),
    )
    line = ReserveLine("HKD", 1_00, "<script>alert(1)</script>", None, date(2026, 11, 1))
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        reserves.publish(
            session=session, audit=older, tree_dir=str(tmp_path / "older"), reserves=[line]
        )
    html = http.get("/reserves").text
    assert html.index('id="audit-2026-12-01"') < html.index('id="audit-2026-11-01"')
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert published.audit.root.hex() in html and older.root.hex() in html
    assert html.count('class="badge">Latest') == 1
    assert '<time datetime="2026-12-01T00:00:00Z">2026-12-01 00:00 UTC</time>' in html
    assert 'href="/reserves/verify?audit=2026-11-01"' in html
    verify = http.get("/reserves/verify?audit=2026-11-01").text
    assert re.search(r'<option value="2026-11-01"\s+selected>', verify)
    for unknown in ("no-such-audit", "x" * 500):  # falls back to the latest
        html = http.get("/reserves/verify", params={"audit": unknown}).text
        assert re.search(r'<option value="2026-12-01"\s+selected>', html)


def test_one_audit_by_id(http: httpx.Client, published: Published) -> None:
    latest = http.get("/v1/reserves/latest")
    one = http.get(f"/v1/reserves/{AUDIT_ID}")
    assert one.status_code == 200 and latest.status_code == 200
    assert one.json() == latest.json()
    assert one.json()["root"] == published.audit.root.hex()
    missing = http.get("/v1/reserves/1999-01-01")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "audit_not_found"


def test_the_list_is_bounded(pg_db: Engine) -> None:
    with db.make_session_factory(pg_db)() as session:
        assert reserves.recent(session=session, limit=pages.LISTED_AUDITS) == []
        with pytest.raises(ValidationFailed, match="limit must be"):
            reserves.recent(session=session, limit=reserves.MAX_LISTED_AUDITS + 1)


def test_every_template_and_static_file_is_packaged() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["strongroom"]
    files = [
        path.relative_to(PACKAGE).as_posix()
        for folder in ("reserves/templates", "reserves/static")
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file()
    ]
    assert len(files) >= 6
    for name in files:
        assert any(_glob_match(name, pattern) for pattern in patterns), name


def _glob_match(name: str, pattern: str) -> bool:
    """Like setuptools' package-data globs: ``*`` never crosses a ``/``."""
    names, parts = name.split("/"), pattern.split("/")
    return len(names) == len(parts) and all(map(fnmatch, names, parts))
