"""SPEC P1: exact parsing and formatting of amounts; bad input refused, never rounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.errors import InvalidAmount, UnknownAsset
from strongroom.money import (
    BUILTIN_ASSETS,
    MAX_AMOUNT_MINOR,
    AssetRegistry,
    format_amount,
    parse_amount,
)

REGISTRY = AssetRegistry(BUILTIN_ASSETS)


def test_builtin_assets_and_scales():
    assert {(a.code, a.scale) for a in REGISTRY.all()} == {
        ("HKD", 2),
        ("CNY", 2),
        ("USD", 2),
        ("BTC", 8),
        ("ETH", 18),
        ("USDT", 6),
        ("USDC", 6),
        ("PTS", 0),
    }


@pytest.mark.parametrize(
    ("text", "scale", "minor"),
    [
        ("12.50", 2, 1250),
        ("12.5", 2, 1250),
        ("12", 2, 1200),
        ("0.01", 2, 1),
        ("0.00000001", 8, 1),
        ("1", 18, 10**18),
        ("007", 0, 7),
        ("340282366920938463463.374607431768211455", 18, MAX_AMOUNT_MINOR),
    ],
)
def test_parse_exact(text, scale, minor):
    assert parse_amount(text, scale) == minor


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "-1",
        "+1",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "1,000",
        "1.",
        ".5",
        "0x10",
        "１２",
        "1.001",
        "0",
        "0.00",
        "340282366920938463463.374607431768211456",
        "1_000",
    ],
)
def test_parse_refuses(text):
    with pytest.raises(InvalidAmount) as refused:
        parse_amount(text, 2 if text != "340282366920938463463.374607431768211456" else 18)
    assert refused.value.code == "invalid_amount"


@pytest.mark.parametrize("value", [12.5, 12, None, True, ["1"], {"a": 1}])
def test_non_strings_are_refused(value):
    with pytest.raises(InvalidAmount):
        parse_amount(value, 2)


def test_more_decimals_than_scale_is_refused_not_rounded():
    with pytest.raises(InvalidAmount) as refused:
        parse_amount("1.005", 2)
    assert "more than 2 decimals" in refused.value.message


def test_zero_allowed_only_when_asked():
    assert parse_amount("0.00", 2, allow_zero=True) == 0


def test_unknown_asset():
    with pytest.raises(UnknownAsset) as refused:
        REGISTRY.money("1.00", "DOGE")
    assert refused.value.code == "unknown_asset"


@pytest.mark.parametrize(
    ("minor", "scale", "text"),
    [
        (0, 2, "0.00"),
        (1, 2, "0.01"),
        (-150, 2, "-1.50"),
        (7, 0, "7"),
        (10**18, 18, "1.000000000000000000"),
    ],
)
def test_format(minor, scale, text):
    assert format_amount(minor, scale) == text


@given(st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR), st.integers(0, 18))
def test_format_then_parse_round_trips(minor, scale):
    assert parse_amount(format_amount(minor, scale), scale) == minor
