"""Code 128 barcodes as SVG (the pay screen's barcode, R-CODE-1): code set C for an even
number of digits (a payment code: 24 digits, 12 symbols), code set B for other printable ASCII.
Pure; the output is a standalone SVG document for an ``<img src="data:...">``."""

from __future__ import annotations

import base64
from typing import Final

from strongroom.errors import invariant

_ROWS: Final = (  # ten symbol values a row: 0-9, 10-19, ...
    "212222 222122 222221 121223 121322 131222 122213 122312 132212 221213",
    "221312 231212 112232 122132 122231 113222 123122 123221 223211 221132",
    "221231 213212 223112 312131 311222 321122 321221 312212 322112 322211",
    "212123 212321 232121 111323 131123 131321 112313 132113 132311 211313",
    "231113 231311 112133 112331 132131 113123 113321 133121 313121 211331",
    "231131 213113 213311 213131 311123 311321 331121 312113 312311 332111",
    "314111 221411 431111 111224 111422 121124 121421 141122 141221 112214",
    "112412 122114 122411 142112 142211 241211 221114 413111 241112 134111",
    "111242 121142 121241 114212 124112 124211 411212 421112 421211 212141",
    "214121 412121 111143 111341 131141 114113 114311 411113 411311 113141",
    "114131 311141 411131 211412 211214 211232 2331112",
)
PATTERNS: Final = tuple(pattern for row in _ROWS for pattern in row.split())
"""Bar and space widths (in modules) of symbol values 0-105 and the stop pattern."""
START_B: Final = 104
START_C: Final = 105
STOP: Final = 106
QUIET_MODULES: Final = 10
TEXT_MAX_CHARS: Final = 80


def symbols(text: str) -> list[int]:
    """The symbol values: start, data, check symbol, stop."""
    invariant(0 < len(text) <= TEXT_MAX_CHARS, "a barcode holds 1 to 80 characters")
    if text.isascii() and text.isdigit() and len(text) % 2 == 0:
        values = [START_C] + [int(text[i : i + 2]) for i in range(0, len(text), 2)]
    else:
        invariant(all(32 <= ord(c) <= 126 for c in text), "code set B: printable ASCII only")
        values = [START_B] + [ord(c) - 32 for c in text]
    check = (values[0] + sum(i * v for i, v in enumerate(values[1:], start=1))) % 103
    return [*values, check, STOP]


def modules(text: str) -> str:
    """The barcode as modules: "1" a bar, "0" a space (without the quiet zones)."""
    out: list[str] = []
    for value in symbols(text):
        for index, width in enumerate(PATTERNS[value]):
            out.append(("1" if index % 2 == 0 else "0") * int(width))
    return "".join(out)


def svg(text: str, *, height_modules: int = 50) -> str:
    """A standalone SVG of the barcode, quiet zones included, one unit per module."""
    bars = modules(text)
    width = len(bars) + 2 * QUIET_MODULES
    rects: list[str] = []
    position = 0
    while position < len(bars):  # bounded: each pass moves past one bar or space
        run = len(bars[position:]) - len(bars[position:].lstrip(bars[position]))
        if bars[position] == "1":
            x = QUIET_MODULES + position
            rects.append(f'<rect x="{x}" y="0" width="{run}" height="{height_modules}"/>')
        position += run
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height_modules}" '
        f'width="{width * 2}" height="{height_modules * 2}" shape-rendering="crispEdges">'
        f'<rect width="{width}" height="{height_modules}" fill="#fff"/>'
        f'<g fill="#000">{"".join(rects)}</g></svg>'
    )


def data_uri(text: str) -> str:
    """The SVG as a ``data:`` URI (the pages' CSP allows ``img-src data:``)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg(text).encode()).decode()
