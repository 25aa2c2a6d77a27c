"""What both build engines share (``builder``'s local engine and ``spark``): the build options,
the plan they work from, what an engine hands back, the progress callback, and the levels above
the blocks. Kept apart from ``builder`` so that ``spark`` needs nothing of the local engine (and
``builder`` imports ``spark`` only when a build asks for it): no cycle between the two."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from strongroom.errors import ValidationFailed, invariant
from strongroom.reserves.merkle import AMOUNT_BYTES, HASH_BYTES, MAX_PIECES, U8, Shape, build_levels
from strongroom.reserves.snapshot import Snapshot
from strongroom.reserves.treefile import TreeWriter

I64 = npt.NDArray[np.int64]
Engine = Literal["local", "spark"]


class Progress(Protocol):
    def phase(self, name: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...


class Silent:
    def phase(self, name: str, total: int) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None


@dataclass(frozen=True, slots=True)
class BuildOptions:
    pieces: int = 2
    workers: int = 0
    """Processes for the local engine; 0 = every core, 1 = in this process."""
    chunk_accounts: int = 1 << 14
    block_leaves: int = 1 << 16
    engine: Engine = "local"
    spark_master: str = "local[*]"
    derive_leaves: bool | None = None
    """Whether pass B derives each piece's vector and each padding tag again (from the tags and
    the balances) instead of pass A keeping them: the same bytes, 40 % less memory at 10 M
    accounts, about 15 % more hashing. None: only when they would take more than
    ``DERIVE_ABOVE_BYTES``. Threads and the in-process build only; worker processes keep them."""

    def check(self) -> None:
        if not 1 <= self.pieces <= MAX_PIECES:
            raise ValidationFailed(f"pieces must be 1..{MAX_PIECES}", code="invalid_pieces")
        invariant(self.workers >= 0 and self.chunk_accounts >= 1, "bad build options")
        invariant(
            self.block_leaves >= 2 and not self.block_leaves & (self.block_leaves - 1),
            "block_leaves must be a power of two",
        )
        if self.engine not in ("local", "spark"):
            raise ValidationFailed("engine must be local or spark", code="invalid_engine")

    @property
    def processes(self) -> int:
        return self.workers or os.cpu_count() or 1


DERIVE_ABOVE_BYTES = 1 << 30
"""Piece vectors and padding tags above this size are derived again rather than kept."""


@dataclass(frozen=True)
class Plan:
    """What both engines work from."""

    snapshot: Snapshot
    secret: bytes
    pieces: int
    shape: Shape

    @property
    def accounts(self) -> int:
        return self.snapshot.count

    @property
    def real_leaves(self) -> int:
        return self.accounts * self.pieces

    @property
    def padding(self) -> int:
        return self.shape.leaf_count - self.real_leaves

    def block_level(self, block_leaves: int) -> int:
        return min(self.shape.leaf_count, block_leaves).bit_length() - 1

    def derives(self, options: BuildOptions) -> bool:
        """Whether pass B derives the piece vectors and padding tags (BuildOptions)."""
        if options.derive_leaves is not None:
            return options.derive_leaves
        vectors = self.real_leaves * AMOUNT_BYTES * len(self.snapshot.assets)
        return vectors * (self.pieces > 1) + self.padding * HASH_BYTES > DERIVE_ABOVE_BYTES


@dataclass(frozen=True)
class Built:
    """An engine's result: the tree is in the writer's file; ``positions`` maps each leaf
    position to its leaf id (account · pieces + piece, then padding); ``tags`` per account;
    ``index`` the partial index file when the engine wrote it (the local engine writes it while
    it hashes the tree)."""

    positions: I64
    tags: U8
    root_record: bytes
    index: Path | None = None


def write_top(plan: Plan, writer: TreeWriter, block_level: int, roots: bytes) -> bytes:
    """The levels above the blocks, from the block roots; returns the root record."""
    levels = build_levels(roots, len(plan.snapshot.assets))
    for offset, level in enumerate(levels[1:], start=1):
        writer.write(block_level + offset, 0, level)
    return levels[-1]
