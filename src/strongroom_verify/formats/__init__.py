"""One module per proof format, each with `FORMAT`, `detect(obj) -> bool` and `verify(...)`.

Detection is by fields (POR_FORMATS §2): `obj` is the parsed JSON, or the raw text for a file
that is not JSON (a BitMEX tree).
"""

from __future__ import annotations

from collections.abc import Callable

from strongroom_verify.formats import bitget, bitmex, mexc, okx_v1, okx_v2, strongroom_por_v1

# The order matters only where fields overlap: Bitget and OKX v1 both have `self` and `path`.
DETECTORS: tuple[tuple[str, Callable[[object], bool]], ...] = (
    (strongroom_por_v1.FORMAT, strongroom_por_v1.detect),
    (mexc.FORMAT, mexc.detect),
    (okx_v2.FORMAT, okx_v2.detect),
    (bitget.FORMAT, bitget.detect),
    (okx_v1.FORMAT, okx_v1.detect),
    (bitmex.FORMAT, bitmex.detect),
)


def detect(obj: object) -> str | None:
    """The name of the format `obj` is in, or None."""
    for name, matches in DETECTORS:
        if matches(obj):
            return name
    return None
