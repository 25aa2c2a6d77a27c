"""The tree file (POR_FORMATS §1) and the account index beside it.

``tree.bin``::

    magic "SRPOR1" ‖ u16be version (1) ‖ u32be header_bytes ‖ u64be leaf_count ‖ u8 height
    ‖ u16be asset_count ‖ per asset: u8 len ‖ code (ASCII) ‖ u8 scale ‖ zero padding to 64 bytes
    then every level, leaves first, each node hash(32) ‖ enc(B)

Level ``l`` starts ``(2·leaf_count - 2·(leaf_count >> l))`` records after the header, so a proof
needs one read per level. ``index.bin`` maps an account to its leaves::

    magic "SRPIX1" ‖ u16be version (1) ‖ u16be pieces ‖ u64be count ‖ zero padding to 32 bytes
    then ``count`` entries sorted by key: user_tag[:16] ‖ one u64be leaf index per piece

Both are written under a ``.partial`` name and renamed into place only when complete, so an
interrupted build never leaves a file that looks finished.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from strongroom.errors import invariant
from strongroom.reserves.merkle import HASH_BYTES, MAX_PIECES, Shape
from strongroom_verify.por_v1 import Asset

TREE_MAGIC = b"SRPOR1"
INDEX_MAGIC = b"SRPIX1"
VERSION = 1
HEADER_ALIGN = 64
INDEX_HEADER_BYTES = 32
INDEX_KEY_BYTES = 16
_FIXED = struct.Struct(">6sHIQBH")
_INDEX = struct.Struct(">6sHHQ")


class TreeFileError(Exception):
    """A tree or index file is missing, truncated or not in our format."""


# ------------------------------------------------------------------------------------------------
# Header


def encode_header(assets: tuple[Asset, ...], shape: Shape) -> bytes:
    table = b"".join(
        bytes([len(a.code)]) + a.code.encode("ascii") + bytes([a.scale]) for a in assets
    )
    size = _FIXED.size + len(table)
    padded = -(-size // HEADER_ALIGN) * HEADER_ALIGN
    fixed = _FIXED.pack(TREE_MAGIC, VERSION, padded, shape.leaf_count, shape.height, len(assets))
    return (fixed + table).ljust(padded, b"\x00")


@dataclass(frozen=True, slots=True)
class TreeHeader:
    assets: tuple[Asset, ...]
    shape: Shape
    header_bytes: int

    def offset(self, level: int, index: int) -> int:
        invariant(0 <= index < self.shape.nodes_at(level), "node index out of range")
        return self.header_bytes + self.shape.level_start(level) + index * self.shape.record


def decode_header(data: bytes | mmap.mmap) -> TreeHeader:
    if len(data) < _FIXED.size:
        raise TreeFileError("tree file is too short")
    magic, version, header_bytes, leaf_count, height, asset_count = _FIXED.unpack_from(data, 0)
    if magic != TREE_MAGIC or version != VERSION:
        raise TreeFileError("not a strongroom-por-v1 tree file (version 1)")
    assets: list[Asset] = []
    position = _FIXED.size
    for _ in range(asset_count):
        if position + 1 > len(data):
            raise TreeFileError("tree file header is truncated")
        length = data[position]
        code = bytes(data[position + 1 : position + 1 + length]).decode("ascii")
        assets.append(Asset(code, data[position + 1 + length]))
        position += length + 2
    if position > header_bytes or leaf_count < 2 or leaf_count & (leaf_count - 1):
        raise TreeFileError("tree file header is inconsistent")
    shape = Shape(len(assets), leaf_count)
    if shape.height != height:
        raise TreeFileError("tree file height does not match its leaf count")
    return TreeHeader(tuple(assets), shape, header_bytes)


# ------------------------------------------------------------------------------------------------
# Writing


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of an existing file (any process may call this)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        _write_all(fd, offset, data)
    finally:
        os.close(fd)


def _write_all(fd: int, offset: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]


class TreeWriter:
    """The tree file under construction: preallocated, written at computed offsets."""

    def __init__(self, final: Path, assets: tuple[Asset, ...], shape: Shape) -> None:
        self.final = final
        self.path = partial_path(final)
        header = encode_header(assets, shape)
        self.header = decode_header(header)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self._fd, len(header) + shape.levels_bytes)
        _write_all(self._fd, 0, header)

    def offset(self, level: int, index: int) -> int:
        return self.header.offset(level, index)

    def write(self, level: int, index: int, records: bytes) -> None:
        _write_all(self._fd, self.offset(level, index), records)

    def commit(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.path, self.final)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)


def write_file_atomically(final: Path, data: bytes, mode: int = 0o644) -> None:
    path = partial_path(final)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        _write_all(fd, 0, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(path, final)


def encode_index_header(pieces: int, count: int) -> bytes:
    invariant(1 <= pieces <= MAX_PIECES, "pieces out of range")
    return _INDEX.pack(INDEX_MAGIC, VERSION, pieces, count).ljust(INDEX_HEADER_BYTES, b"\x00")


# ------------------------------------------------------------------------------------------------
# Reading


class TreeFile:
    """A memory-mapped tree file: one read per level for a proof."""

    def __init__(self, path: Path) -> None:
        try:
            with path.open("rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:
            raise TreeFileError(f"cannot open {path}: {error}") from error
        self.header = decode_header(self._map)
        expected = self.header.header_bytes + self.header.shape.levels_bytes
        if len(self._map) != expected:
            raise TreeFileError(f"{path} has {len(self._map)} bytes, its header says {expected}")

    @property
    def shape(self) -> Shape:
        return self.header.shape

    def node(self, level: int, index: int) -> bytes:
        start = self.header.offset(level, index)
        return self._map[start : start + self.header.shape.record]

    def level(self, level: int) -> bytes:
        start = self.header.offset(level, 0)
        return self._map[start : start + self.shape.nodes_at(level) * self.shape.record]

    def root(self) -> bytes:
        return self.node(self.shape.height, 0)

    def close(self) -> None:
        self._map.close()


class IndexFile:
    """The account index: binary search on the 16-byte user-tag prefix, O(log n) reads."""

    def __init__(self, path: Path) -> None:
        try:
            with path.open("rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:
            raise TreeFileError(f"cannot open {path}: {error}") from error
        if len(self._map) < INDEX_HEADER_BYTES:
            raise TreeFileError("index file is too short")
        magic, version, pieces, count = _INDEX.unpack_from(self._map, 0)
        if magic != INDEX_MAGIC or version != VERSION or not 1 <= pieces <= MAX_PIECES:
            raise TreeFileError("not a strongroom-por-v1 index file (version 1)")
        self.pieces: int = pieces
        self.count: int = count
        self.entry = INDEX_KEY_BYTES + 8 * pieces
        if len(self._map) != INDEX_HEADER_BYTES + count * self.entry:
            raise TreeFileError("index file size does not match its header")

    def _key(self, position: int) -> bytes:
        start = INDEX_HEADER_BYTES + position * self.entry
        return self._map[start : start + INDEX_KEY_BYTES]

    def lookup(self, user_tag: bytes) -> list[int] | None:
        """The leaf indices of the account with this tag (piece order), or None."""
        invariant(len(user_tag) == HASH_BYTES, "user_tag must be 32 bytes")
        wanted = user_tag[:INDEX_KEY_BYTES]
        low, high = 0, self.count
        while low < high:
            middle = (low + high) // 2
            if self._key(middle) < wanted:
                low = middle + 1
            else:
                high = middle
        if low == self.count or self._key(low) != wanted:
            return None
        start = INDEX_HEADER_BYTES + low * self.entry + INDEX_KEY_BYTES
        raw = self._map[start : start + 8 * self.pieces]
        return [int.from_bytes(raw[8 * p : 8 * p + 8], "big") for p in range(self.pieces)]

    def close(self) -> None:
        self._map.close()
