"""Small audits for the reserves tests."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import pytest

from strongroom.reserves import merkle
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.merkle import HASH_BYTES, NativeKernel, Shape
from strongroom.reserves.snapshot import Snapshot
from strongroom.reserves.treefile import TreeFile
from tests.conftest import missing

SCALES = {"BTC": 8, "ETH": 18, "HKD": 2, "USDT": 6}
SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))


def require_kernel() -> NativeKernel:
    """The C kernel, for a test about it. Turned off on purpose (``STRONGROOM_POR_NATIVE=0``, a
    run of the pure-Python path) the test is skipped; not built, it is missing: a skip here, a
    failure under ``CI=true``, where ``pip install -e '.[test]'`` must have built it."""
    if merkle.kernel is not None:
        return merkle.kernel
    if os.environ.get(merkle.NATIVE_ENV, "").strip() == "0":
        pytest.skip(f"{merkle.NATIVE_ENV}=0 turns the C kernel off for this run")
    missing(
        "the C kernel strongroom.reserves._native",
        "install with a C compiler and the OpenSSL headers: pip install -e '.[test]'",
    )


def random_balances(count: int, seed: int = 7) -> dict[str, dict[str, int]]:
    rng = random.Random(seed)
    balances: dict[str, dict[str, int]] = {}
    for number in range(count):
        row = {
            code: rng.choice([0, rng.randrange(1, 10 ** rng.randrange(1, 30))]) for code in SCALES
        }
        if not any(row.values()):
            row["HKD"] = 1
        balances[f"user-{number:06d}"] = row
    return balances


def build_audit(
    directory: Path,
    balances: Mapping[str, Mapping[str, int]],
    *,
    secret: bytes = SECRET,
    pieces: int = 2,
    workers: int = 1,
    block_leaves: int = 1 << 16,
    created_at: datetime | None = None,
    derive_leaves: bool | None = None,
) -> Path:
    snapshot = Snapshot.from_mapping(SCALES, balances)
    options = BuildOptions(
        pieces=pieces, workers=workers, block_leaves=block_leaves, derive_leaves=derive_leaves
    )
    build(
        snapshot,
        directory,
        secret=secret,
        audit_id="test-audit",
        created_at=created_at,
        options=options,
    )
    return directory


def all_records(directory: Path) -> list[tuple[int, int, bytes]]:
    """Every node of a tree file: (level, index, record)."""
    tree = TreeFile(directory / "tree.bin")
    shape: Shape = tree.shape
    nodes = []
    for level in range(shape.height + 1):
        data = tree.level(level)
        for index in range(shape.nodes_at(level)):
            nodes.append((level, index, data[index * shape.record : (index + 1) * shape.record]))
    tree.close()
    return nodes


def all_hashes(directory: Path) -> set[bytes]:
    return {record[:HASH_BYTES] for _, _, record in all_records(directory)}
