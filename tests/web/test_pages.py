"""The reserves pages over HTTP, without a browser: headers, what the HTML may and may not
contain under the CSP, escaping, order, the per-audit endpoint, the packaged files, and the
language (cookie, Accept-Language, the switch, the scripts' messages)."""

from __future__ import annotations

import hashlib
import json
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
from strongroom.reserves import service as reserves
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.service import ReserveLine
from strongroom.reserves.snapshot import Snapshot
from strongroom.web import core, i18n
from strongroom.web.reserves import pages

from .conftest import AUDIT_ID, CREATED_AT, Published, csrf_token

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
        for attrs, body in scripts:
            if 'type="application/json"' in attrs:  # data for verify.js, never run
                assert "src=" not in attrs and isinstance(json.loads(body), dict)
            else:
                assert re.search(r'\bsrc="/static/', attrs) and not body, attrs
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
        assert core.static_url(f"reserves/{name}") == f"/static/reserves/{name}?v={version}"
    assert http.get("/static/reserves/missing.js").status_code == 404
    assert http.get("/static/reserves/%2e%2e/pages.py").status_code == 404
    with pytest.raises(InvariantViolation):
        core.static_url("../pages.py")


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
    taken = i18n.lang_for("en").when(CREATED_AT)  # Hong Kong time, the Lite app's format
    assert "Dec 1, 2026" in taken
    assert f'<time datetime="2026-12-01T00:00:00Z">{taken}</time>' in html
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
        for folder in ("web/reserves", "web/templates/reserves", "web/static/reserves")
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts
    ]
    files.append("web/babel-reserves.cfg")
    assert len(files) >= 7
    for name in files:
        assert any(_glob_match(name, pattern) for pattern in patterns), name


def _glob_match(name: str, pattern: str) -> bool:
    """Like setuptools' package-data globs: ``*`` never crosses a ``/``."""
    names, parts = name.split("/"), pattern.split("/")
    return len(names) == len(parts) and all(map(fnmatch, names, parts))


# ------------------------------------------------------------------------------------------------
# Languages


def _lang_attribute(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', html)
    assert found is not None
    return found.group(1)


def test_the_language_comes_from_the_cookie_or_accept_language(
    http: httpx.Client, published: Published
) -> None:
    for path in ("/reserves", "/reserves/verify"):
        english = http.get(path, headers={"Accept-Language": "fr, en;q=0.5"})
        chinese = http.get(path, headers={"Accept-Language": "zh-TW,zh;q=0.9"})
        cookie = http.get(path, headers={"Accept-Language": "en", "Cookie": "lang=zh_Hant"})
        assert _lang_attribute(english.text) == "en"
        assert _lang_attribute(chinese.text) == "zh-Hant" == _lang_attribute(cookie.text)
        assert "儲備證明" in chinese.text and "儲備證明" not in english.text
        assert chinese.text == cookie.text.replace(
            csrf_token(cookie.text), csrf_token(chinese.text)
        )
        for response in (english, chinese):
            assert response.headers["vary"] == "Accept-Language, Cookie"
            assert response.headers["cache-control"] == "private, no-cache"
    unknown = http.get("/reserves", headers={"Cookie": "lang=xx", "Accept-Language": "de"})
    assert _lang_attribute(unknown.text) == "en"


def test_the_audits_page_in_chinese_formats_dates_and_amounts(
    http: httpx.Client, published: Published
) -> None:
    html = http.get("/reserves", headers={"Accept-Language": "zh-HK"}).text
    assert "<h1>儲備證明</h1>" in html
    assert f"<h2>審計 {AUDIT_ID}</h2>" in html and 'class="badge">最新' in html
    assert i18n.lang_for("zh_Hant").when(CREATED_AT) in html
    assert "2026年12月1日" in html  # the audit taken and the reserves' "as of" day
    assert 'data-label="負債">143.45</td>' in html
    assert "低於 1" in html and "below 1" not in html
    assert "在此審計中驗證我的餘額" in html


def test_large_amounts_are_grouped_exactly(
    http: httpx.Client, pg_db: Engine, tmp_path: Path
) -> None:
    """Amounts are formatted from their exact digits: a balance beyond a float's precision keeps
    every digit, grouped per the locale."""
    whale = 12_345_678_901_234_567_891  # minor units at scale 2: not exact as a float
    audit = build(
        Snapshot.from_mapping({"HKD": 2}, {"whale": {"HKD": whale}, "minnow": {"HKD": 1}}),
        tmp_path / "big",
        secret=bytes(range(32)),
        audit_id="2026-10-01",
        created_at=datetime(2026, 10, 1, tzinfo=UTC),
        options=BuildOptions(workers=1),
    )
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        reserves.publish(session=session, audit=audit, tree_dir=str(tmp_path / "big"), reserves=[])
    for language in ("en", "zh-HK"):
        html = http.get("/reserves", headers={"Accept-Language": language}).text
        assert ">123,456,789,012,345,678.92</td>" in html


def test_the_switch_on_a_reserves_page_sets_the_language_and_comes_back(
    http: httpx.Client, published: Published
) -> None:
    page = http.get("/reserves/verify?audit=2026-12-01", headers={"Accept-Language": "en"})
    form = re.search(r'<form class="language" method="post" action="/app/language">', page.text)
    assert form is not None
    assert (
        '<input type="hidden" name="next" value="/reserves/verify?audit=2026-12-01">' in page.text
    )
    token = csrf_token(page.text)
    refused = http.post("/app/language", data={"lang": "zh_Hant", "next": "/reserves"})
    assert refused.status_code == 403 and "lang" not in refused.cookies  # no CSRF token
    switched = http.post(
        "/app/language",
        data={"csrf_token": token, "lang": "zh_Hant", "next": "/reserves/verify?audit=2026-12-01"},
    )
    assert switched.status_code == 303
    assert switched.headers["location"] == "/reserves/verify?audit=2026-12-01"
    assert switched.cookies["lang"] == "zh_Hant"
    chinese = http.get(switched.headers["location"], headers={"Accept-Language": "en"})
    assert _lang_attribute(chinese.text) == "zh-Hant" and "立即驗證" in chinese.text
    elsewhere = http.post(
        "/app/language", data={"csrf_token": token, "lang": "en", "next": "//evil.example/reserves"}
    )
    assert elsewhere.headers["location"] == "/app/"  # never another site


def test_the_verify_page_gives_its_script_the_messages_in_its_language(
    http: httpx.Client, published: Published
) -> None:
    for language, valid, separator in (("en", "Valid", ", "), ("zh-HK", "有效", "、")):
        html = http.get("/reserves/verify", headers={"Accept-Language": language}).text
        block = re.search(
            r'<script type="application/json" id="reserves-i18n">(.*?)</script>', html, re.S
        )
        assert block is not None
        data = json.loads(block.group(1))
        assert set(data["messages"]) == set(pages.script_messages())
        assert data["messages"]["Valid"] == valid and data["separator"] == separator
        assert (data["group"], data["decimal"], data["grouping"]) == (",", ".", [3, 3])
