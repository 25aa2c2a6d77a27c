"""The web layer's pure parts: amounts and dates per language, Accept-Language, local
redirect targets. No database, no server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from babel import Locale
from hypothesis import given
from hypothesis import strategies as st

from strongroom.errors import InvariantViolation
from strongroom.money import MAX_AMOUNT_MINOR, MAX_SCALE, format_amount, parse_amount
from strongroom.web import core, i18n

EN = i18n.lang_for("en")
ZH = i18n.lang_for("zh_Hant")


@pytest.mark.parametrize(
    ("amount_minor", "scale", "text"),
    [
        (0, 2, "0.00"),
        (5, 2, "0.05"),
        (123456789, 2, "1,234,567.89"),
        (100000, 2, "1,000.00"),
        (99999, 2, "999.99"),
        (1, 8, "0.00000001"),
        (2_100_000_000_000_000, 8, "21,000,000.00000000"),
        (1234567, 0, "1,234,567"),
        (-123456, 2, "-1,234.56"),
        (10**18, 18, "1.000000000000000000"),
        (MAX_AMOUNT_MINOR, 0, "340,282,366,920,938,463,463,374,607,431,768,211,455"),
    ],
)
def test_amounts_keep_every_digit(amount_minor: int, scale: int, text: str) -> None:
    assert EN.amount(amount_minor, scale) == text
    assert ZH.amount(amount_minor, scale) == text  # zh-Hant groups and points as English does


def test_amounts_use_the_locale_symbols_and_grouping() -> None:
    german = i18n.Lang("de", Locale.parse("de"), EN.catalog)
    assert german.amount(123456789, 2) == "1.234.567,89"
    indian = i18n.Lang("en_IN", Locale.parse("en_IN"), EN.catalog)  # 3 then 2 digits a group
    assert indian.amount(1234567890, 2) == "1,23,45,678.90"


@given(st.integers(min_value=0, max_value=MAX_AMOUNT_MINOR), st.integers(min_value=0, max_value=18))
def test_a_formatted_amount_reads_back_exactly(amount_minor: int, scale: int) -> None:
    assert scale <= MAX_SCALE
    text = EN.amount(amount_minor, scale)
    assert parse_amount(text.replace(",", ""), scale, allow_zero=True) == amount_minor
    assert text.replace(",", "") == format_amount(amount_minor, scale)


def test_dates_in_each_language_in_hong_kong_time() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # 11:04:05 in Hong Kong
    assert EN.when(moment).replace("\u202f", " ") == "Jan 2, 2026, 11:04:05 AM"
    assert ZH.when(moment).startswith("2026年1月2日") and "11:04:05" in ZH.when(moment)
    with pytest.raises(InvariantViolation):
        EN.when(datetime(2026, 1, 2))


def test_catalogs_translate() -> None:
    assert EN.gettext("Sign in") == "Sign in"
    assert ZH.gettext("Sign in") == "登入"
    assert ZH.gettext("Hello, %(name)s") % {"name": "陳"} == "陳，你好"
    assert ZH.html_lang == "zh-Hant" and EN.html_lang == "en"
    with pytest.raises(InvariantViolation):
        i18n.lang_for("fr")


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-Hant", "zh_Hant"),
        ("zh-Hant-HK", "zh_Hant"),
        ("zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh_Hant"),
        ("zh_HK", "zh_Hant"),
        ("en-GB,en;q=0.9,zh-HK;q=0.8", "en"),
        ("fr-FR,fr;q=0.9", "en"),
        ("fr-FR, zh;q=0.4, en;q=0.3", "zh_Hant"),
        ("zh;q=0, en", "en"),
        ("zh;q=0.5, en;q=0.6", "en"),
        ("zh;q=abc, en;q=0.1", "en"),
        ("zh;q=2, en;q=0.1", "en"),
        (";;;,,,", "en"),
        ("*", "en"),
        ("x" * 5000 + ", zh", "en"),  # longer than we read: the rest is ignored
    ],
)
def test_accept_language(header: str | None, language: str) -> None:
    assert i18n.negotiate(header) == language


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("/app/signup", "/app/signup"),
        ("/app/", "/app/"),
        ("/app", "/app"),
        ("/app/history?cursor=12", "/app/history?cursor=12"),
        ("/console/users", "/console/users"),
        ("/application", "/app/"),
        ("/v1/me", "/app/"),
        ("//evil.example/app/", "/app/"),
        ("/\\evil.example", "/app/"),
        ("https://evil.example/app/", "/app/"),
        ("app/", "/app/"),
        ("/app/\r\nSet-Cookie: x=1", "/app/"),
        ("", "/app/"),
        (None, "/app/"),
        ("/app/" + "x" * 600, "/app/"),
    ],
)
def test_local_path(candidate: str | None, expected: str) -> None:
    assert core.local_path(candidate, "/app/", ("/app", "/console")) == expected


def test_static_url_hashes_content_and_stays_inside_static() -> None:
    url = core.static_url("web/lite.css")
    assert url.startswith("/static/web/lite.css?v=") and len(url.rsplit("=", 1)[1]) == 12
    assert core.static_url("reserves/reserves.css").startswith("/static/reserves/reserves.css?v=")
    for name in ("../core.py", "web/../../core.py", "web/missing.css", "/etc/passwd"):
        with pytest.raises(InvariantViolation):
            core.static_url(name)
