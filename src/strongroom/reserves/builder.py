"""Build an audit directory (``root.json``, ``tree.bin``, ``index.bin``, ``secret.key``) from a
snapshot, with all cores (local) or on Spark. Both engines share the plan below and produce the
same bytes:

1. per account: user tag, piece split, order keys (pass A, parallel over contiguous chunks);
   per padding leaf: tag and order key;
2. every leaf's position: the leaves sorted by order key;
3. the tree in contiguous power-of-two blocks of leaves: each block's subtree is built and
   written straight into the tree file at its computed offsets (pass B, parallel); the levels
   above the blocks are built from the block roots;
4. the account index, the audit secret and ``root.json``.

Every file is written under a ``.partial`` name and renamed only once all are complete, root.json
last: an interrupted build leaves nothing that looks like an audit. Memory is a few numpy arrays
(tags, order keys, piece vectors, positions): about 300 bytes per account with 2 pieces and 4
assets, never a Python object per node.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from strongroom.errors import ValidationFailed, invariant
from strongroom.reserves import audit as files
from strongroom.reserves.audit import Audit
from strongroom.reserves.merkle import (
    AMOUNT_BYTES,
    HASH_BYTES,
    KEY_BYTES,
    MAX_PIECES,
    U8,
    AccountLeaves,
    AuditKey,
    Shape,
    account_leaves,
    build_levels,
    dec,
    leaf_count_for,
    leaf_records,
    padding_leaves,
)
from strongroom.reserves.snapshot import Snapshot
from strongroom.reserves.treefile import (
    INDEX_KEY_BYTES,
    TreeHeader,
    TreeWriter,
    encode_index_header,
    partial_path,
    write_at,
)

T = TypeVar("T")
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


@dataclass(frozen=True)
class Built:
    """An engine's result: the tree is in the writer's file; ``positions`` maps each leaf
    position to its leaf id (account · pieces + piece, then padding); ``tags`` per account."""

    positions: I64
    tags: U8
    root_record: bytes


def build(
    snapshot: Snapshot,
    out_dir: Path,
    *,
    secret: bytes,
    audit_id: str | None = None,
    created_at: datetime | None = None,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
) -> Audit:
    """Build and write one audit. Refuses a directory that already holds one."""
    options = options or BuildOptions()
    options.check()
    created_at = created_at or datetime.now(UTC).replace(microsecond=0)
    audit_id = files.check_audit_id(audit_id or files.default_audit_id(created_at))
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [name for name in files.AUDIT_FILES if (out_dir / name).exists()]
    if existing:
        raise ValidationFailed(
            f"{out_dir} already holds an audit ({', '.join(existing)}); use an empty directory",
            code="audit_exists",
        )
    AuditKey(secret)  # checks the secret's length before any work
    shape = Shape(len(snapshot.assets), leaf_count_for(snapshot.count * options.pieces))
    plan = Plan(snapshot, secret, options.pieces, shape)
    writer = TreeWriter(out_dir / files.TREE_FILE, snapshot.assets, shape)
    partials: list[tuple[Path, Path]] = []
    try:
        built = _run_engine(plan, writer, options, progress or Silent())
        audit = _check_root(plan, built, audit_id, created_at)
        partials.append(
            (_write_index(plan, built, out_dir / files.INDEX_FILE), out_dir / files.INDEX_FILE)
        )
        partials.append(
            (
                _write_partial(out_dir / files.SECRET_FILE, (secret.hex() + "\n").encode(), 0o600),
                out_dir / files.SECRET_FILE,
            )
        )
        partials.append(
            (
                _write_partial(out_dir / files.ROOT_FILE, _json(audit.to_json()), 0o644),
                out_dir / files.ROOT_FILE,
            )
        )
        writer.commit()
        for partial, final in partials:  # root.json last: only then does it look complete
            os.replace(partial, final)
    except BaseException:
        writer.abort()
        for partial, _ in partials:
            partial.unlink(missing_ok=True)
        raise
    return audit


def _run_engine(plan: Plan, writer: TreeWriter, options: BuildOptions, progress: Progress) -> Built:
    if options.engine == "spark":
        from strongroom.reserves.spark import spark_build

        return spark_build(plan, writer, options, progress)
    return local_build(plan, writer, options, progress)


def _check_root(plan: Plan, built: Built, audit_id: str, created_at: datetime) -> Audit:
    record = built.root_record
    n_assets = len(plan.snapshot.assets)
    totals = tuple(dec(record[HASH_BYTES:], n_assets))
    invariant(totals == plan.snapshot.totals, "the root's totals differ from the snapshot's")
    return Audit(
        audit_id,
        created_at,
        plan.snapshot.assets,
        record[:HASH_BYTES],
        totals,
        plan.shape.leaf_count,
    )


def _json(data: dict[str, Any]) -> bytes:
    import json

    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def _write_partial(final: Path, data: bytes, mode: int) -> Path:
    path = partial_path(final)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


# ------------------------------------------------------------------------------------------------
# Shared steps


def sort_order(keys: U8) -> I64:
    """Positions → leaf ids, by the 16-byte order keys (bytewise); no two keys may be equal."""
    count = len(keys)
    high = np.ascontiguousarray(keys[:, :8]).view(">u8").reshape(count).astype(np.uint64)
    low = np.ascontiguousarray(keys[:, 8:KEY_BYTES]).view(">u8").reshape(count).astype(np.uint64)
    order = np.argsort(high, kind="stable")
    sorted_high = high[order]
    ties = np.flatnonzero(sorted_high[1:] == sorted_high[:-1])
    for start in np.unique(ties):
        end = start + 1
        while end + 1 < count and sorted_high[end + 1] == sorted_high[start]:
            end += 1
        group = order[start : end + 1]
        order[start : end + 1] = group[np.argsort(low[group], kind="stable")]
    sorted_low = low[order]
    same = (sorted_high[1:] == sorted_high[:-1]) & (sorted_low[1:] == sorted_low[:-1])
    invariant(not bool(same.any()), "two leaves share an order key")
    return order.astype(np.int64)


def _write_index(plan: Plan, built: Built, final: Path) -> Path:
    """index.bin: per account, sorted by tag prefix, the leaf position of each piece."""
    accounts, pieces, real = plan.accounts, plan.pieces, plan.real_leaves
    positions = np.empty(real, dtype=np.int64)
    is_real = built.positions < real
    positions[built.positions[is_real]] = np.flatnonzero(is_real)
    by_account = positions.reshape(accounts, pieces)
    keys = np.ascontiguousarray(built.tags[:, :INDEX_KEY_BYTES])
    high = keys[:, :8].copy().view(">u8").reshape(accounts).astype(np.uint64)
    low = keys[:, 8:].copy().view(">u8").reshape(accounts).astype(np.uint64)
    order = np.lexsort((low, high))
    same = (high[order][1:] == high[order][:-1]) & (low[order][1:] == low[order][:-1])
    invariant(not bool(same.any()), "two accounts share a user-tag prefix")
    path = partial_path(final)
    with path.open("xb") as handle:
        handle.write(encode_index_header(pieces, accounts))
        step = 1 << 18
        for start in range(0, accounts, step):
            chosen = order[start : start + step]
            entries = np.empty((len(chosen), INDEX_KEY_BYTES + 8 * pieces), dtype=np.uint8)
            entries[:, :INDEX_KEY_BYTES] = keys[chosen]
            entries[:, INDEX_KEY_BYTES:] = (
                by_account[chosen].astype(">u8").view(np.uint8).reshape(len(chosen), 8 * pieces)
            )
            handle.write(entries.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    return path


def block_inputs(
    plan: Plan, leaf_ids: I64, tags: U8, pad_tags: U8, vectors: U8
) -> tuple[U8, npt.NDArray[np.uint32], U8]:
    """The (tag, piece, vector) of each leaf id, in the given order."""
    real, pieces = plan.real_leaves, plan.pieces
    count = len(leaf_ids)
    width = AMOUNT_BYTES * len(plan.snapshot.assets)
    is_real = leaf_ids < real
    real_ids = leaf_ids[is_real]
    block_tags = np.empty((count, HASH_BYTES), dtype=np.uint8)
    block_tags[is_real] = tags[real_ids // pieces]
    block_tags[~is_real] = pad_tags[leaf_ids[~is_real] - real]
    block_pieces = np.zeros(count, dtype=np.uint32)
    block_pieces[is_real] = real_ids % pieces
    block_vectors = np.zeros((count, width), dtype=np.uint8)
    block_vectors[is_real] = vectors[real_ids]
    return block_tags, block_pieces, block_vectors


def write_top(plan: Plan, writer: TreeWriter, block_level: int, roots: bytes) -> bytes:
    """The levels above the blocks, from the block roots; returns the root record."""
    levels = build_levels(roots, len(plan.snapshot.assets))
    for offset, level in enumerate(levels[1:], start=1):
        writer.write(block_level + offset, 0, level)
    return levels[-1]


# ------------------------------------------------------------------------------------------------
# Local engine: a process pool over contiguous chunks


_KEYS: dict[bytes, AuditKey] = {}


def _key(secret: bytes) -> AuditKey:
    if secret not in _KEYS:
        _KEYS.clear()
        _KEYS[secret] = AuditKey(secret)
    return _KEYS[secret]


def accounts_task(secret: bytes, pieces: int, ids: list[str], balances: U8) -> AccountLeaves:
    return account_leaves(_key(secret), ids, balances, pieces)


def padding_task(secret: bytes, first: int, count: int) -> tuple[bytes, bytes]:
    return padding_leaves(_key(secret), first, count)


def block_task(
    path: Path,
    header: TreeHeader,
    block: int,
    tags: U8,
    pieces: npt.NDArray[np.uint32],
    vectors: U8,
) -> bytes:
    """Build one block's subtree and write its levels into the tree file; return its root."""
    levels = build_levels(leaf_records(tags, pieces, vectors), len(header.assets))
    size = len(tags)
    for level, records in enumerate(levels):
        write_at(path, header.offset(level, block * (size >> level)), records)
    return levels[-1]


class Runner:
    """Ordered map over a process pool with a bound on tasks in flight (or inline)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        if processes > 1:
            self._pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"))

    def map(self, function: Callable[..., T], arguments: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        if self._pool is None:
            for args in arguments:
                yield function(*args)
            return
        pending: deque[Future[T]] = deque()
        for args in arguments:
            pending.append(self._pool.submit(function, *args))
            if len(pending) >= 2 * self.processes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def local_build(plan: Plan, writer: TreeWriter, options: BuildOptions, progress: Progress) -> Built:
    runner = Runner(options.processes)
    try:
        tags, pad_tags, keys, vectors = _pass_a(plan, runner, options, progress)
        progress.phase("ordering leaves", 1)
        positions = sort_order(keys)
        del keys
        progress.advance(1)
        root = _pass_b(plan, runner, writer, options, progress, positions, tags, pad_tags, vectors)
    finally:
        runner.close()
    return Built(positions, tags, root)


def _pass_a(
    plan: Plan, runner: Runner, options: BuildOptions, progress: Progress
) -> tuple[U8, U8, U8, U8]:
    snapshot, pieces, chunk = plan.snapshot, plan.pieces, options.chunk_accounts
    width = AMOUNT_BYTES * len(snapshot.assets)
    tags = np.empty((plan.accounts, HASH_BYTES), dtype=np.uint8)
    keys = np.empty((plan.shape.leaf_count, KEY_BYTES), dtype=np.uint8)
    vectors = (
        snapshot.balances if pieces == 1 else np.empty((plan.real_leaves, width), dtype=np.uint8)
    )
    progress.phase("salts, pieces, order", plan.accounts + plan.padding)
    starts = range(0, plan.accounts, chunk)
    arguments = (
        (
            plan.secret,
            pieces,
            snapshot.account_ids.chunk(s, min(s + chunk, plan.accounts)),
            snapshot.balances[s : s + chunk],
        )
        for s in starts
    )
    for start, result in zip(starts, runner.map(accounts_task, arguments), strict=True):
        count = len(result.tags) // HASH_BYTES
        tags[start : start + count] = np.frombuffer(result.tags, np.uint8).reshape(count, -1)
        first, last = start * pieces, (start + count) * pieces
        keys[first:last] = np.frombuffer(result.keys, np.uint8).reshape(last - first, -1)
        if pieces > 1:
            vectors[first:last] = np.frombuffer(result.vectors, np.uint8).reshape(
                last - first, width
            )
        progress.advance(count)
    pad_tags = np.empty((plan.padding, HASH_BYTES), dtype=np.uint8)
    pad_starts = range(0, plan.padding, chunk)
    pad_arguments = ((plan.secret, s, min(chunk, plan.padding - s)) for s in pad_starts)
    for start, (tag_bytes, key_bytes) in zip(
        pad_starts, runner.map(padding_task, pad_arguments), strict=True
    ):
        count = len(tag_bytes) // HASH_BYTES
        pad_tags[start : start + count] = np.frombuffer(tag_bytes, np.uint8).reshape(count, -1)
        first = plan.real_leaves + start
        keys[first : first + count] = np.frombuffer(key_bytes, np.uint8).reshape(count, -1)
        progress.advance(count)
    return tags, pad_tags, keys, vectors


def _pass_b(
    plan: Plan,
    runner: Runner,
    writer: TreeWriter,
    options: BuildOptions,
    progress: Progress,
    positions: I64,
    tags: U8,
    pad_tags: U8,
    vectors: U8,
) -> bytes:
    block_level = plan.block_level(options.block_leaves)
    size = 1 << block_level
    blocks = plan.shape.leaf_count // size
    progress.phase("hashing the tree", plan.shape.leaf_count)

    def arguments() -> Iterator[tuple[Any, ...]]:
        for block in range(blocks):
            leaf_ids = positions[block * size : (block + 1) * size]
            yield (
                writer.path,
                writer.header,
                block,
                *block_inputs(plan, leaf_ids, tags, pad_tags, vectors),
            )

    roots: list[bytes] = []
    for root in runner.map(block_task, arguments()):
        roots.append(root)
        progress.advance(size)
    return write_top(plan, writer, block_level, b"".join(roots))
