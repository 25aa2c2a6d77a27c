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

The tree file is most of what a build writes (96 bytes per node with 4 assets: 6 GiB for 10 M
accounts), and going through the page cache costs more CPU than the hashing once the dirty
pages pass the kernel's limits. So the builder writes it with ``O_DIRECT`` where it can: the
records of a block's level are computed in ``LevelBuffers``, page-aligned memory in which they
sit at the same offset within a page as in the file, and ``TreeWriter.write_placed`` sends the
whole pages among them straight to the disk and only the partial pages at either end through the
page cache (no page is written both ways, so the two never disagree). Where ``O_DIRECT`` is not
available (another OS, a file system that refuses it) everything goes through the page cache.
"""

from __future__ import annotations

import contextlib
import errno
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
PAGE_BYTES = 4096
"""The alignment of direct writes: offset, length and memory (a multiple of any disk's logical
block size)."""
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


def _write_all(fd: int, offset: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]


def _open_direct(path: Path) -> int:
    """A second descriptor of ``path`` for direct writes, or -1 where there are none."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or os.environ.get(DIRECT_ENV, "").strip() == "0":
        return -1
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:  # e.g. EINVAL from a file system without direct I/O
        return -1


DIRECT_ENV = "STRONGROOM_POR_DIRECT"
"""Set to ``0`` to write the tree file through the page cache only."""


class LevelBuffers:
    """Memory for the levels of one block of the tree, reused block after block (a new buffer per
    block would cost a page fault per 4 KiB). Each level has its own page-aligned region, and
    ``place`` puts its records at the same offset within a page as they will have in the file."""

    def __init__(self, record: int, leaves: int) -> None:
        invariant(leaves >= 1 and leaves & (leaves - 1) == 0, "a block has 2^j leaves")
        self._sizes = [(leaves >> level) * record for level in range(leaves.bit_length())]
        self._starts = []
        total = 0
        for size in self._sizes:
            self._starts.append(total)
            total += -(-(size + PAGE_BYTES) // PAGE_BYTES) * PAGE_BYTES
        self._memory = mmap.mmap(-1, total)  # anonymous memory starts on a page
        self._view = memoryview(self._memory)

    @property
    def levels(self) -> int:
        return len(self._sizes)

    def place(self, level: int, file_offset: int) -> memoryview:
        """The writable memory for ``level``'s records, which go to ``file_offset``."""
        start = self._starts[level] + file_offset % PAGE_BYTES
        return self._view[start : start + self._sizes[level]]

    def close(self) -> None:
        self._view.release()
        with contextlib.suppress(BufferError):  # a placed view is still referenced: the
            self._memory.close()  # memory is unmapped when that view goes


class TreeWriter:
    """The tree file under construction: preallocated, written at computed offsets (any thread
    may write; ``pwrite`` needs no shared position)."""

    def __init__(self, final: Path, assets: tuple[Asset, ...], shape: Shape) -> None:
        self.final = final
        self.path = partial_path(final)
        header = encode_header(assets, shape)
        self.header = decode_header(header)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self._fd, len(header) + shape.levels_bytes)
        _write_all(self._fd, 0, header)
        self._direct_fd = _open_direct(self.path)

    @property
    def direct(self) -> bool:
        """Whether whole pages go straight to the disk (O_DIRECT)."""
        return self._direct_fd >= 0

    def offset(self, level: int, index: int) -> int:
        return self.header.offset(level, index)

    def write(self, level: int, index: int, records: bytes | memoryview) -> None:
        _write_all(self._fd, self.offset(level, index), records)

    def write_placed(self, level: int, index: int, records: memoryview) -> None:
        """Write records that ``LevelBuffers.place`` put in memory for this offset: the whole
        pages directly, the partial pages at either end through the page cache."""
        offset = self.offset(level, index)
        end = offset + len(records)
        first_page = -(-offset // PAGE_BYTES) * PAGE_BYTES
        last_page = end // PAGE_BYTES * PAGE_BYTES
        if self._direct_fd < 0 or last_page <= first_page:
            _write_all(self._fd, offset, records)
            return
        _write_all(self._fd, offset, records[: first_page - offset])
        self._write_direct(first_page, records[first_page - offset : last_page - offset])
        _write_all(self._fd, last_page, records[last_page - offset :])

    def _write_direct(self, offset: int, pages: memoryview) -> None:
        try:
            _write_all(self._direct_fd, offset, pages)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            _write_all(self._fd, offset, pages)  # refused after all: the page cache it is

    def commit(self) -> None:
        self._close_direct()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.path, self.final)

    def abort(self) -> None:
        self._close_direct()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)

    def _close_direct(self) -> None:
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1


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
    """A memory-mapped tree file: one read per level for a proof. The map stays open until
    ``close``; each level's offset in the file is computed once."""

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
        shape = self.header.shape
        self.record: int = shape.record
        self.level_starts: tuple[int, ...] = tuple(
            self.header.header_bytes + shape.level_start(level) for level in range(shape.height + 1)
        )
        """The file offset of each level's first record, leaves first."""

    @property
    def shape(self) -> Shape:
        return self.header.shape

    def node(self, level: int, index: int) -> bytes:
        invariant(0 <= level <= self.shape.height, "level out of range")
        invariant(0 <= index < self.shape.nodes_at(level), "node index out of range")
        start = self.level_starts[level] + index * self.record
        return self._map[start : start + self.record]

    def siblings(self, index: int, levels: int) -> list[bytes]:
        """The records of leaf ``index``'s sibling at levels ``0 .. levels - 1`` (one read each,
        no other work: this is a proof's inner loop)."""
        invariant(0 <= index < self.shape.leaf_count, "leaf index out of range")
        invariant(0 <= levels <= self.shape.height, "level out of range")
        data, record = self._map, self.record
        out = []
        for start in self.level_starts[:levels]:
            at = start + (index ^ 1) * record
            out.append(data[at : at + record])
            index >>= 1
        return out

    def level(self, level: int) -> bytes:
        start = self.header.offset(level, 0)
        return self._map[start : start + self.shape.nodes_at(level) * self.shape.record]

    def root(self) -> bytes:
        return self.node(self.shape.height, 0)

    def close(self) -> None:
        self._map.close()


MAX_GUESSES = 12
"""Interpolation steps before the index lookup falls back to bisection (keys are uniform
hashes: about log log n steps are needed, 4 or 5 for 10^8 accounts)."""
BISECT_BELOW = 8


class IndexFile:
    """The account index: entries sorted by the 16-byte user-tag prefix, which is a hash and so
    uniformly spread: an interpolation search finds an entry in O(log log n) reads, with
    bisection (O(log n)) as the bound when the keys are not spread (a corrupted file)."""

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
        self._leaves = struct.Struct(f">{pieces}Q")

    def _key(self, position: int) -> bytes:
        start = INDEX_HEADER_BYTES + position * self.entry
        return self._map[start : start + INDEX_KEY_BYTES]

    def _position(self, wanted: bytes) -> int:
        """The first position whose key is not below ``wanted`` (``count`` if none)."""
        target = int.from_bytes(wanted[:8], "big")
        # Every key in [low, high) has its first 8 bytes, as an integer, in [floor, ceiling).
        low, high, floor, ceiling = 0, self.count, 0, 1 << 64
        for _ in range(MAX_GUESSES):
            if high - low <= BISECT_BELOW or ceiling <= floor:
                break
            guess = low + (target - floor) * (high - low) // (ceiling - floor)
            guess = min(max(guess, low), high - 1)
            key = self._key(guess)
            if key < wanted:
                low, floor = guess + 1, int.from_bytes(key[:8], "big")
            elif key > wanted:
                high, ceiling = guess, int.from_bytes(key[:8], "big") + 1
            else:
                return guess
        while low < high:
            middle = (low + high) // 2
            if self._key(middle) < wanted:
                low = middle + 1
            else:
                high = middle
        return low

    def lookup(self, user_tag: bytes) -> list[int] | None:
        """The leaf indices of the account with this tag (piece order), or None."""
        invariant(len(user_tag) == HASH_BYTES, "user_tag must be 32 bytes")
        wanted = user_tag[:INDEX_KEY_BYTES]
        position = self._position(wanted)
        if position == self.count or self._key(position) != wanted:
            return None
        start = INDEX_HEADER_BYTES + position * self.entry + INDEX_KEY_BYTES
        return list(self._leaves.unpack_from(self._map, start))

    def close(self) -> None:
        self._map.close()
