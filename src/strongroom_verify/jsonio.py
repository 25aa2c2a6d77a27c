"""Strict JSON loading and typed access that says where a proof is malformed."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from strongroom_verify.result import ProofError

_LOWER_HEX = re.compile(r"[0-9a-f]*")


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def load_json(text: str) -> object:
    """Parse JSON exactly: numbers with a fraction become Decimal, never float; a duplicate
    key or NaN/Infinity is an error (ValueError), as is nesting too deep to parse."""
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_reject_duplicates,
        )
    except RecursionError as error:
        raise ValueError("JSON nested too deeply") from error


def as_dict(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ProofError(f"{where}: expected an object")
    return value


def as_list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise ProofError(f"{where}: expected a list")
    return value


def as_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ProofError(f"{where}: expected a string")
    return value


def as_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{where}: expected an integer")
    return value


def field(obj: dict[str, object], key: str, where: str) -> object:
    if key not in obj:
        raise ProofError(f"{where}.{key}: missing")
    return obj[key]


def lower_hex(text: str, where: str, *, chars: int | None = None) -> str:
    """Check a lowercase hex string (of exactly `chars` characters when given)."""
    if not _LOWER_HEX.fullmatch(text) or (chars is not None and len(text) != chars):
        size = "" if chars is None else f"{chars} "
        raise ProofError(f"{where}: expected {size}lowercase hex characters")
    return text
