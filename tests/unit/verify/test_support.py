"""Java key orders, Java/Go decimal formatting, strict JSON."""

from __future__ import annotations

import ast
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import strongroom_verify
from strongroom_verify.decimals import java_plain, parse_decimal, round_down_plain
from strongroom_verify.javaorder import java8_hashmap_order, java_sorted, java_string_hash
from strongroom_verify.jsonio import load_json
from strongroom_verify.result import ProofError


def test_java_string_hash() -> None:
    assert java_string_hash("hello") == 99162322  # "hello".hashCode() in Java
    assert java_string_hash("BTC") == 66097
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    assert java_string_hash("") == 0
    assert java_string_hash("polygenelubricants") == 2**31  # Integer.MIN_VALUE, unsigned


def test_java8_hashmap_order() -> None:
    assert java8_hashmap_order(["USDC", "USDT", "ETH", "BTC"]) == ["BTC", "ETH", "USDT", "USDC"]
    assert java8_hashmap_order(["BB", "Aa"]) == ["BB", "Aa"]  # same bucket: insertion order
    assert java8_hashmap_order(["Aa", "BB"]) == ["Aa", "BB"]
    many = [f"C{n}" for n in range(13)]  # 13 keys: the table has grown to 32 buckets
    assert sorted(java8_hashmap_order(many)) == sorted(many)


def test_java_sorted_uses_utf16_code_units() -> None:
    assert java_sorted(["USDT", "BTC", "ETH"]) == ["BTC", "ETH", "USDT"]
    assert java_sorted(["\U0001f600", "\uffff"]) == ["\U0001f600", "\uffff"]


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("1.10", "1.1"),
        ("0.000", "0"),
        ("-0.00", "0"),
        ("100", "100"),
        ("1E+3", "1000"),
        ("-12.50", "-12.5"),
        ("0.00000001", "0.00000001"),
    ],
)
def test_java_plain(value: str, plain: str) -> None:
    assert java_plain(Decimal(value)) == plain


def test_round_down_plain() -> None:
    assert round_down_plain(Decimal("1.123456789")) == "1.12345678"
    assert round_down_plain(Decimal("-1.123456789")) == "-1.12345678"
    assert round_down_plain(Decimal("2.000000009")) == "2"


def test_parse_decimal_is_exact_and_strict() -> None:
    big = "9" * 40 + "." + "9" * 30
    assert str(parse_decimal(big, "x")) == big
    for bad in ["1e5", "+1", " 1", "1.", "", "NaN", "1" * 81, 1]:
        with pytest.raises(ProofError):
            parse_decimal(bad, "x")
    assert parse_decimal(Decimal("1.50"), "x", allow_number=True) == Decimal("1.5")
    with pytest.raises(ProofError):
        parse_decimal(True, "x", allow_number=True)


def test_load_json_never_makes_floats() -> None:
    document = load_json('{"a": 1.10, "b": [2, 3.0]}')
    assert document == {"a": Decimal("1.10"), "b": [2, Decimal("3.0")]}
    assert isinstance(document, dict)
    assert isinstance(document["a"], Decimal)
    for bad in ['{"a": 1, "a": 2}', "[Infinity]", "[-Infinity]", "[NaN]"]:
        with pytest.raises(ValueError):
            load_json(bad)


def test_standard_library_only() -> None:
    """No module of strongroom_verify imports anything outside the standard library."""
    package = Path(strongroom_verify.__file__).parent
    for source in package.rglob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "strongroom_verify", (source, name)
