"""Strongroom's own format (POR_FORMATS §1); the work is in `strongroom_verify.por_v1`."""

from __future__ import annotations

from strongroom_verify import por_v1
from strongroom_verify.result import Result

FORMAT = por_v1.FORMAT


def detect(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def verify(obj: object) -> Result:
    return por_v1.verify_proof(obj)
