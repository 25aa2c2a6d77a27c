"""Draw the Lite app's icons (a safe's door on the brand colour) as PNG files, with the standard
library only (zlib, struct). Run once after changing the design; the PNGs are committed:

    python scripts/make_icons.py

writes ``src/strongroom/web/static/web/icons/icon-{192,512}.png`` (rounded, transparent corners)
and ``icon-maskable-512.png`` (full bleed, the door inside the 80% safe zone of maskable icons).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

OUT = (
    Path(__file__).resolve().parents[1] / "src" / "strongroom" / "web" / "static" / "web" / "icons"
)
BRAND = (15, 91, 79)
WHITE = (255, 255, 255)
SAMPLES = 4  # per axis: 16 samples a pixel, for smooth edges

Shape = Callable[[float, float], bool]  # (x, y) in 0..1 → inside


def _rounded_square(radius: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        dx = max(radius - x, 0.0, x - (1 - radius))
        dy = max(radius - y, 0.0, y - (1 - radius))
        return dx * dx + dy * dy <= radius * radius

    return inside


def _door(scale: float) -> Shape:
    """A safe's door seen from the front: its frame, a dial with four marks, and two hinges;
    ``scale`` of the icon wide."""

    def inside(x: float, y: float) -> bool:
        u, v = (x - 0.5) / scale, (y - 0.5) / scale
        edge = max(abs(u), abs(v))
        if 0.40 <= edge <= 0.47:  # the frame
            return True
        if -0.53 <= u <= -0.47 and (0.22 <= abs(v) <= 0.32):  # hinges
            return True
        distance = math.hypot(u, v)
        if 0.19 <= distance <= 0.25 or distance <= 0.07:  # dial and its knob
            return True
        on_axis = min(abs(u), abs(v)) <= 0.025
        return on_axis and 0.25 <= distance <= 0.31  # the four marks

    return inside


def _pixels(size: int, background: Shape, symbol: Shape) -> bytes:
    rows = bytearray()
    step = 1 / (size * SAMPLES)
    for py in range(size):
        rows.append(0)  # filter: none
        for px in range(size):
            cover = door = 0
            for sy in range(SAMPLES):
                y = (py * SAMPLES + sy + 0.5) * step
                for sx in range(SAMPLES):
                    x = (px * SAMPLES + sx + 0.5) * step
                    if background(x, y):
                        cover += 1
                        door += symbol(x, y)
            total = SAMPLES * SAMPLES
            alpha = round(255 * cover / total)
            mix = door / cover if cover else 0.0
            colour = [round(b + (w - b) * mix) for b, w in zip(BRAND, WHITE, strict=True)]
            rows.extend((*colour, alpha))
    return bytes(rows)


def _png(size: int, rgba: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rgba, 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    icons = {
        "icon-192.png": (192, _rounded_square(0.22), _door(0.8)),
        "icon-512.png": (512, _rounded_square(0.22), _door(0.8)),
        "icon-maskable-512.png": (512, lambda _x, _y: True, _door(0.6)),
    }
    for name, (size, background, symbol) in icons.items():
        (OUT / name).write_bytes(_png(size, _pixels(size, background, symbol)))
        print(OUT / name)


if __name__ == "__main__":
    main()
