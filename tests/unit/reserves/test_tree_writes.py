"""Writing the tree file: records placed for direct I/O land exactly where plain writes would put
them (the whole pages straight to the disk, the partial ones through the page cache), with or
without O_DIRECT, and a failed write fails the build without leaving anything behind."""

from __future__ import annotations

import errno
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strongroom.reserves import treefile
from strongroom.reserves.merkle import Shape
from strongroom.reserves.treefile import PAGE_BYTES, LevelBuffers, TreeWriter
from strongroom_verify.por_v1 import Asset
from tests.conftest import missing
from tests.unit.reserves.helpers import build_audit, random_balances, require_kernel

ASSETS = (Asset("BTC", 8), Asset("ETH", 18), Asset("HKD", 2), Asset("USDT", 6))


def _require_direct_io(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Direct writes on for this test, and possible in ``directory``: the test is about them."""
    monkeypatch.setenv(treefile.DIRECT_ENV, "1")
    if not hasattr(os, "O_DIRECT"):
        # The platform (macOS, Windows) has no O_DIRECT at all: the builder writes through the
        # page cache there by design, and the page-cache tests cover that path. Not an install
        # that is missing, so a skip even under CI=true.
        pytest.skip("this OS has no O_DIRECT: only the page-cache path can run here")
    probe = TreeWriter(directory / "probe.bin", ASSETS, Shape(len(ASSETS), 1 << 4))
    direct = probe.direct
    probe.abort()
    if not direct:
        missing(
            f"O_DIRECT on the file system of {directory} (tmpfs before Linux 6.6 refuses it)",
            "run pytest with --basetemp on a disk file system (ext4, xfs, btrfs)",
        )


def _placed_writes(path: Path, direct: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bool]:
    """Every block's every level of a 2^12-leaf tree in blocks of 2^7, written placed, in a
    shuffled order; returns the file and whether the writer wrote directly."""
    monkeypatch.setenv(treefile.DIRECT_ENV, "1" if direct else "0")
    shape = Shape(len(ASSETS), 1 << 12)
    writer = TreeWriter(path, ASSETS, shape)
    went_direct = writer.direct
    rng = random.Random(4)
    size = 1 << 7
    buffers = LevelBuffers(shape.record, size)
    jobs = [(block, level) for block in range(shape.leaf_count // size) for level in range(8)]
    rng.shuffle(jobs)
    for block, level in jobs:
        index = block * (size >> level)
        records = buffers.place(level, writer.offset(level, index))
        assert (writer.offset(level, index) - _address(records)) % PAGE_BYTES == 0
        records[:] = _pattern(level, index, len(records))
        writer.write_placed(level, index, records)
    writer.write(8, 0, _pattern(8, 0, shape.nodes_at(8) * shape.record))
    for level in range(9, shape.height + 1):
        writer.write(level, 0, _pattern(level, 0, shape.nodes_at(level) * shape.record))
    buffers.close()
    writer.commit()
    return path.read_bytes(), went_direct


def _address(view: memoryview) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def _pattern(level: int, index: int, length: int) -> bytes:
    return random.Random(level * 1_000_003 + index).randbytes(length)


def _expected(shape: Shape) -> bytes:
    header = treefile.encode_header(ASSETS, shape)
    body = bytearray(shape.levels_bytes)
    size = 1 << 7
    for level in range(shape.height + 1):
        start = shape.level_start(level)
        if level < 8:
            for block in range(shape.leaf_count // size):
                index = block * (size >> level)
                length = (size >> level) * shape.record
                at = start + index * shape.record
                body[at : at + length] = _pattern(level, index, length)
        else:
            length = shape.nodes_at(level) * shape.record
            body[start : start + length] = _pattern(level, 0, length)
    return header + bytes(body)


@pytest.mark.parametrize("direct", [True, False])
def test_placed_records_land_where_plain_writes_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    if direct:
        _require_direct_io(tmp_path, monkeypatch)
    data, went_direct = _placed_writes(tmp_path / "tree.bin", direct, monkeypatch)
    assert went_direct == direct
    assert data == _expected(Shape(len(ASSETS), 1 << 12))


def test_records_not_placed_on_a_page_still_land_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory that is not page-aligned makes O_DIRECT refuse (EINVAL): the writer falls back to
    the page cache for those pages instead of failing."""
    _require_direct_io(tmp_path, monkeypatch)
    shape = Shape(len(ASSETS), 1 << 10)
    writer = TreeWriter(tmp_path / "tree.bin", ASSETS, shape)
    records = memoryview(bytearray(b"\x01" + _pattern(0, 0, shape.leaf_count * shape.record)))[1:]
    writer.write_placed(0, 0, records)
    writer.commit()
    data = (tmp_path / "tree.bin").read_bytes()
    start = len(treefile.encode_header(ASSETS, shape))
    assert data[start : start + len(records)] == bytes(records)


def test_direct_and_page_cache_builds_are_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_direct_io(tmp_path, monkeypatch)
    balances = random_balances(3000, seed=5)
    at = datetime(2026, 11, 30, tzinfo=UTC)
    direct = build_audit(tmp_path / "d", balances, workers=2, block_leaves=1024, created_at=at)
    monkeypatch.setenv(treefile.DIRECT_ENV, "0")
    cached = build_audit(tmp_path / "c", balances, workers=2, block_leaves=1024, created_at=at)
    for name in ("tree.bin", "index.bin", "root.json"):
        assert (direct / name).read_bytes() == (cached / name).read_bytes(), name


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_write_fails_the_build_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    calls = {"count": 0}
    real_write = TreeWriter.write_placed

    def failing_write(self: TreeWriter, level: int, index: int, records: memoryview) -> None:
        calls["count"] += 1
        if calls["count"] == 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, level, index, records)

    if workers > 1:  # without the C kernel the worker processes write their blocks themselves,
        require_kernel()  # where this patch does not reach
    monkeypatch.setattr(TreeWriter, "write_placed", failing_write)
    out = tmp_path / "audit"
    with pytest.raises(OSError, match="No space left"):
        build_audit(out, random_balances(2000), workers=workers, block_leaves=64)
    assert sorted(os.listdir(out)) == []  # no tree.bin, no index.bin, no .partial left
