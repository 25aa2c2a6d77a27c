"""Build an audit directory (``root.json``, ``tree.bin``, ``index.bin``, ``secret.key``) from a
snapshot, with all cores (local) or on Spark. Both engines share the plan (``plan.py``) and
produce the same bytes:

1. per account: user tag, piece split, order keys (pass A, parallel over contiguous chunks);
   per padding leaf: tag and order key;
2. every leaf's position: the leaves sorted by order key;
3. the tree in contiguous power-of-two blocks of leaves: each block's subtree is built and
   written straight into the tree file at its computed offsets (pass B, parallel); the levels
   above the blocks are built from the block roots;
4. the account index (the local engine writes it in a thread during pass B: it needs only the
   order and the tags), the audit secret and ``root.json``.

Every file is written under a ``.partial`` name and renamed only once all are complete, root.json
last: an interrupted build leaves nothing that looks like an audit. Memory is a few numpy arrays
(tags, order keys, piece vectors, padding tags, positions): about 400 bytes per account with 2
pieces and 4 assets, never a Python object per node; about 270 when pass B derives the piece
vectors and padding tags again (``BuildOptions.derive_leaves``, the default for large builds).

With the C kernel (``merkle.kernel``) the local engine runs its tasks on threads: the kernel
releases the GIL, so the threads hash in parallel and read and write the shared arrays in place
(pass A writes its rows, pass B gathers its leaves itself), and the sorts are the kernel's radix
sorts. Without it (no compiler at install time, or ``STRONGROOM_POR_NATIVE=0``) the tasks run in
worker processes in Python and are sent their inputs. The bytes are the same either way.

Pass B hashes each block into reused page-aligned buffers and hands them to two writer threads
(``BlockWrites``), which write them with direct I/O (treefile): the tree file is most of what a
build writes, and through the page cache its writing cost more CPU than the hashing at 10 M
accounts (6 GiB, past the kernel's dirty-page limits).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from strongroom.errors import InvariantViolation, ValidationFailed, invariant
from strongroom.reserves import audit as files
from strongroom.reserves import merkle
from strongroom.reserves.audit import Audit
from strongroom.reserves.merkle import (
    AMOUNT_BYTES,
    HASH_BYTES,
    KEY_BYTES,
    U8,
    AccountLeaves,
    AuditKey,
    IdColumn,
    Shape,
    account_leaves,
    account_leaves_into,
    build_levels,
    dec,
    gather_leaves,
    index_entries,
    key_order,
    leaf_count_for,
    leaf_records,
    leaf_records_by_id_into,
    leaf_records_of_into,
    padding_leaves,
    padding_leaves_into,
    parents_into,
)
from strongroom.reserves.plan import I64, Built, Plan, Progress, Silent, write_top
from strongroom.reserves.plan import (  # re-exported: the options of build()
    BuildOptions as BuildOptions,
)
from strongroom.reserves.snapshot import Snapshot
from strongroom.reserves.treefile import (
    LevelBuffers,
    TreeHeader,
    TreeWriter,
    encode_index_header,
    partial_path,
    write_at,
)

T = TypeVar("T")


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
    progress = progress or Silent()
    try:
        built = _run_engine(plan, writer, options, progress, out_dir / files.INDEX_FILE)
        if built.index is not None:
            partials.append((built.index, out_dir / files.INDEX_FILE))
        audit = _check_root(plan, built, audit_id, created_at)
        if built.index is None:
            progress.phase("writing the index", 1)
            index = _write_index(
                plan, built.positions, built.tags, out_dir / files.INDEX_FILE, options.processes
            )
            partials.append((index, out_dir / files.INDEX_FILE))
            progress.advance(1)
        progress.phase("committing the files", 1)
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
        progress.advance(1)
    except BaseException:
        writer.abort()
        for partial, _ in partials:
            partial.unlink(missing_ok=True)
        raise
    return audit


def _run_engine(
    plan: Plan, writer: TreeWriter, options: BuildOptions, progress: Progress, index_final: Path
) -> Built:
    if options.engine == "spark":
        from strongroom.reserves.spark import spark_build

        return spark_build(plan, writer, options, progress)
    return local_build(plan, writer, options, progress, index_final)


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


def sort_order(keys: U8, threads: int = 1) -> I64:
    """Positions → leaf ids, by the 16-byte order keys (bytewise); no two keys may be equal."""
    order, duplicate = key_order(keys, threads)
    invariant(not duplicate, "two leaves share an order key")
    return order


def _write_index(plan: Plan, leaf_ids: I64, tags: U8, final: Path, threads: int = 1) -> Path:
    """index.bin under its partial name: per account, sorted by tag prefix, the leaf position
    of each piece (``leaf_ids``: the leaf id at each position, as ``Built.positions``)."""
    accounts, pieces, real = plan.accounts, plan.pieces, plan.real_leaves
    positions = np.empty(real, dtype=np.int64)
    is_real = leaf_ids < real
    positions[leaf_ids[is_real]] = np.flatnonzero(is_real)
    del is_real
    by_account = positions.reshape(accounts, pieces)
    order, duplicate = key_order(tags, threads)
    invariant(not duplicate, "two accounts share a user-tag prefix")
    path = partial_path(final)
    try:
        with path.open("xb") as handle:
            handle.write(encode_index_header(pieces, accounts))
            step = 1 << 18
            for start in range(0, accounts, step):
                handle.write(index_entries(order[start : start + step], tags, by_account))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def block_inputs(
    plan: Plan, leaf_ids: I64, tags: U8, pad_tags: U8, vectors: U8
) -> tuple[U8, npt.NDArray[np.uint32], U8]:
    """The (tag, piece, vector) of each leaf id, in the given order."""
    return gather_leaves(leaf_ids, tags, pad_tags, vectors, plan.pieces)


# ------------------------------------------------------------------------------------------------
# Local engine: a process pool over contiguous chunks


_KEYS: dict[bytes, AuditKey] = {}


def _key(secret: bytes) -> AuditKey:
    if secret not in _KEYS:
        _KEYS.clear()
        _KEYS[secret] = AuditKey(secret)
    return _KEYS[secret]


def accounts_task(secret: bytes, pieces: int, ids: IdColumn, balances: U8) -> AccountLeaves:
    return account_leaves(_key(secret), ids, balances, pieces)


def padding_task(secret: bytes, first: int, count: int) -> tuple[bytes, bytes]:
    return padding_leaves(_key(secret), first, count)


def accounts_into_task(
    secret: bytes,
    pieces: int,
    ids: IdColumn,
    balances: U8,
    tags: U8,
    keys: U8,
    vectors: U8 | None,
) -> int:
    """``accounts_task`` for a thread: writes into its rows of the shared arrays."""
    account_leaves_into(_key(secret), ids, balances, pieces, tags, keys, vectors)
    return len(ids)


def padding_into_task(secret: bytes, first: int, tags: U8 | None, keys: U8) -> int:
    """``padding_task`` for a thread: writes its rows of the shared keys (and of ``tags``, or
    of scratch memory when the tags are not kept)."""
    if tags is None:
        tags = np.empty((len(keys), HASH_BYTES), dtype=np.uint8)
    padding_leaves_into(_key(secret), first, tags, keys)
    return len(keys)


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


class BlockWrites:
    """Hashed blocks on their way to the tree file. Hashing tasks take a ``LevelBuffers`` from a
    small pool, fill it and hand it to writer threads, which write it (``write_placed``: direct
    I/O where possible) and put it back: a hashing thread waits for the disk only when every
    buffer is waiting for it. With ``writers`` = 0 the task writes itself."""

    def __init__(
        self, writer: TreeWriter, record: int, leaves: int, hashers: int, writers: int
    ) -> None:
        self.writer = writer
        self._free: SimpleQueue[LevelBuffers] = SimpleQueue()
        self._count = hashers + writers + (1 if writers else 0)
        for _ in range(self._count):
            self._free.put(LevelBuffers(record, leaves))
        self._pool = ThreadPoolExecutor(writers, "por-write") if writers else None
        self._pending: list[Future[None]] = []
        self._closed = False

    def take(self) -> LevelBuffers:
        return self._free.get()

    def give_back(self, memory: LevelBuffers) -> None:
        self._free.put(memory)

    def submit(self, memory: LevelBuffers, block: int, levels: list[memoryview]) -> None:
        """Write a filled buffer (``levels``: its placed views) and give it back. After
        ``close`` (the build failed) nothing more is written."""
        if self._closed:
            self.give_back(memory)
        elif self._pool is None:
            self._write(memory, block, levels)
        else:
            self._pending.append(self._pool.submit(self._write, memory, block, levels))

    def _write(self, memory: LevelBuffers, block: int, levels: list[memoryview]) -> None:
        try:
            size = len(levels[0]) // self.writer.header.shape.record
            for level, records in enumerate(levels):
                self.writer.write_placed(level, block * (size >> level), records)
        finally:
            self.give_back(memory)

    def finish(self) -> None:
        """Wait for every write; raises the first write's error."""
        for future in self._pending:
            future.result()

    def close(self) -> None:
        """Stop: the writes in flight end, the buffers given back are freed (one still held by
        a task that has not ended is freed with it)."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        while not self._free.empty():
            self._free.get().close()


@dataclass(frozen=True)
class LeafSource:
    """Where pass B's tasks get their leaves: the arrays of pass A, shared. Without
    ``pad_tags`` and ``vectors`` (``Plan.derives``) they are derived again from the tags and
    balances."""

    secret: bytes
    tags: U8
    balances: U8
    pieces: int
    padding: int
    pad_tags: U8 | None = None
    vectors: U8 | None = None

    def records_into(self, leaf_ids: I64, out: memoryview) -> None:
        """The level-0 records of these leaves, in this order, into ``out``."""
        if self.pad_tags is None or self.vectors is None:
            key = _key(self.secret)
            leaf_records_of_into(
                key, leaf_ids, self.tags, self.balances, self.pieces, self.padding, out
            )
        else:
            leaf_records_by_id_into(
                leaf_ids, self.tags, self.pad_tags, self.vectors, self.pieces, out
            )


def shared_block_task(writes: BlockWrites, block: int, leaf_ids: I64, source: LeafSource) -> bytes:
    """``block_task`` for a thread, which shares the whole arrays: the C kernel gathers (or
    derives) the block's leaves as it hashes them, into a reused buffer placed for direct
    writes, which ``writes`` then writes. Returns the block's root record."""
    header = writes.writer.header
    size = len(leaf_ids)
    memory = writes.take()
    try:
        levels = [
            memory.place(level, header.offset(level, block * (size >> level)))
            for level in range(memory.levels)
        ]
        source.records_into(leaf_ids, levels[0])
        for level in range(1, len(levels)):
            parents_into(levels[level - 1], len(header.assets), levels[level])
        root = bytes(levels[-1])
    except BaseException:
        writes.give_back(memory)
        raise
    writes.submit(memory, block, levels)
    return root


class Runner:
    """Ordered map over a pool with a bound on tasks in flight (or inline). With the C kernel the
    pool is threads: the kernel releases the GIL, and threads share the arrays that processes
    would have to be sent. In pure Python it is processes."""

    def __init__(self, processes: int, *, threads: bool = False) -> None:
        self.processes = processes
        self.threads = threads and processes > 1
        self._pool: Executor | None = None
        if processes > 1 and threads:
            self._pool = ThreadPoolExecutor(processes, thread_name_prefix="por")
        elif processes > 1:
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


def local_build(
    plan: Plan,
    writer: TreeWriter,
    options: BuildOptions,
    progress: Progress,
    index_final: Path | None = None,
) -> Built:
    """Pass A, the order, pass B. With ``index_final``, the index is written by another thread
    while pass B hashes: it needs only the order and the tags, and pass B leaves the cores idle
    whenever its writes wait for the disk."""
    runner = Runner(options.processes, threads=merkle.kernel is not None)
    background = ThreadPoolExecutor(1, thread_name_prefix="por-index")
    index: Future[Path] | None = None
    try:
        tags, keys, pad_tags, vectors = _pass_a(plan, runner, options, progress)
        progress.phase("ordering leaves", 1)
        positions = sort_order(keys, options.processes)
        del keys
        progress.advance(1)
        if index_final is not None:
            index = background.submit(
                _write_index, plan, positions, tags, index_final, options.processes
            )
        root = _pass_b(plan, runner, writer, options, progress, positions, tags, pad_tags, vectors)
        return Built(positions, tags, root, None if index is None else index.result())
    except BaseException:
        if index is not None and not index.cancel() and index.exception() is None:
            index.result().unlink(missing_ok=True)  # written, but the build failed
        raise
    finally:
        runner.close()
        background.shutdown(wait=True)


def _pass_a(
    plan: Plan, runner: Runner, options: BuildOptions, progress: Progress
) -> tuple[U8, U8, U8 | None, U8 | None]:
    """Tags and order keys; with worker processes also the padding tags and the piece vectors
    (tasks that share the arrays derive those again in pass B, which saves their memory: 40 %
    of the build's at 10 M accounts)."""
    tags = np.empty((plan.accounts, HASH_BYTES), dtype=np.uint8)
    keys = np.empty((plan.shape.leaf_count, KEY_BYTES), dtype=np.uint8)
    progress.phase("salts, pieces, order", plan.accounts + plan.padding)
    if runner.threads or runner.processes == 1:
        pad_tags, vectors = _shared_pass_a(plan, runner, options, progress, tags, keys)
        return tags, keys, pad_tags, vectors
    pad_tags, vectors = _sent_pass_a(plan, runner, options, progress, tags, keys)
    return tags, keys, pad_tags, vectors


def _shared_pass_a(
    plan: Plan, runner: Runner, options: BuildOptions, progress: Progress, tags: U8, keys: U8
) -> tuple[U8 | None, U8 | None]:
    """Tasks write their rows of the arrays in place (threads, or this process); the padding
    tags and piece vectors are kept only when pass B does not derive them again."""
    snapshot, pieces, chunk = plan.snapshot, plan.pieces, options.chunk_accounts
    width = AMOUNT_BYTES * len(snapshot.assets)
    pad_tags: U8 | None = None
    vectors: U8 | None = None
    if not plan.derives(options):
        pad_tags = np.empty((plan.padding, HASH_BYTES), dtype=np.uint8)
        vectors = snapshot.balances
        if pieces > 1:
            vectors = np.empty((plan.real_leaves, width), dtype=np.uint8)

    def account_arguments(start: int) -> tuple[Any, ...]:
        stop = min(start + chunk, plan.accounts)
        return (
            plan.secret,
            pieces,
            snapshot.account_ids.column(start, stop),
            snapshot.balances[start:stop],
            tags[start:stop],
            keys[start * pieces : stop * pieces],
            None if vectors is None or pieces == 1 else vectors[start * pieces : stop * pieces],
        )

    def pad_arguments(start: int) -> tuple[Any, ...]:
        stop = min(start + chunk, plan.padding)
        first = plan.real_leaves
        kept = None if pad_tags is None else pad_tags[start:stop]
        return (plan.secret, start, kept, keys[first + start : first + stop])

    for count in runner.map(
        accounts_into_task, map(account_arguments, range(0, plan.accounts, chunk))
    ):
        progress.advance(count)
    for count in runner.map(padding_into_task, map(pad_arguments, range(0, plan.padding, chunk))):
        progress.advance(count)
    return pad_tags, vectors


def _sent_pass_a(
    plan: Plan, runner: Runner, options: BuildOptions, progress: Progress, tags: U8, keys: U8
) -> tuple[U8, U8]:
    """Processes are sent their inputs and send their results back."""
    snapshot, pieces, chunk = plan.snapshot, plan.pieces, options.chunk_accounts
    width = AMOUNT_BYTES * len(snapshot.assets)
    vectors = (
        snapshot.balances if pieces == 1 else np.empty((plan.real_leaves, width), dtype=np.uint8)
    )
    pad_tags = np.empty((plan.padding, HASH_BYTES), dtype=np.uint8)
    starts = range(0, plan.accounts, chunk)
    pad_starts = range(0, plan.padding, chunk)
    arguments = (
        (
            plan.secret,
            pieces,
            snapshot.account_ids.column(s, min(s + chunk, plan.accounts)),
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
    pad_arguments_sent = ((plan.secret, s, min(chunk, plan.padding - s)) for s in pad_starts)
    for start, (tag_bytes, key_bytes) in zip(
        pad_starts, runner.map(padding_task, pad_arguments_sent), strict=True
    ):
        count = len(tag_bytes) // HASH_BYTES
        pad_tags[start : start + count] = np.frombuffer(tag_bytes, np.uint8).reshape(count, -1)
        first = plan.real_leaves + start
        keys[first : first + count] = np.frombuffer(key_bytes, np.uint8).reshape(count, -1)
        progress.advance(count)
    return pad_tags, vectors


def _pass_b(
    plan: Plan,
    runner: Runner,
    writer: TreeWriter,
    options: BuildOptions,
    progress: Progress,
    positions: I64,
    tags: U8,
    pad_tags: U8 | None,
    vectors: U8 | None,
) -> bytes:
    """The tree, block by block; ``pad_tags`` and ``vectors`` as pass A kept them (None: the
    tasks derive them again from the tags and the balances)."""
    block_level = plan.block_level(options.block_leaves)
    size = 1 << block_level
    blocks = plan.shape.leaf_count // size
    progress.phase("hashing the tree", plan.shape.leaf_count)
    leaf_ids = (positions[block * size : (block + 1) * size] for block in range(blocks))
    if runner.threads or runner.processes == 1:
        source = LeafSource(
            plan.secret,
            tags,
            plan.snapshot.balances,
            plan.pieces,
            plan.padding,
            pad_tags,
            vectors,
        )
        roots = _shared_blocks(plan, runner, writer, size, leaf_ids, source)
    else:  # each process is sent only its block's leaves
        if pad_tags is None or vectors is None:
            raise InvariantViolation("worker processes need the leaves pass A kept")
        arguments = (
            (writer.path, writer.header, block, *block_inputs(plan, ids, tags, pad_tags, vectors))
            for block, ids in enumerate(leaf_ids)
        )
        roots = runner.map(block_task, arguments)
    records: list[bytes] = []
    for root in roots:
        records.append(root)
        progress.advance(size)
    return write_top(plan, writer, block_level, b"".join(records))


def _shared_blocks(
    plan: Plan,
    runner: Runner,
    writer: TreeWriter,
    size: int,
    leaf_ids: Iterator[I64],
    source: LeafSource,
) -> Iterator[bytes]:
    """The block roots, in order, from tasks that read the arrays where they are (threads, or
    this process) and hash into reused buffers; with threads, two writer threads write them."""
    writes = BlockWrites(
        writer, plan.shape.record, size, runner.processes, 2 if runner.threads else 0
    )
    arguments = ((writes, block, ids, source) for block, ids in enumerate(leaf_ids))
    try:
        yield from runner.map(shared_block_task, arguments)
        writes.finish()
    finally:
        writes.close()
