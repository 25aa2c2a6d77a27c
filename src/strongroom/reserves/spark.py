"""The Spark engine (R-POR-6): the same tree as the local engine, byte for byte.

Leaves are computed in Spark per chunk of accounts (and per range of padding leaves) and sorted
there by order key; their positions split them into contiguous power-of-two blocks, one Spark
partition each, whose subtrees are built in parallel (``mapPartitionsWithIndex``). The driver
writes the blocks into the tree file as they arrive and builds the levels above them from the
block roots. Every hash comes from the functions in ``merkle`` that the local engine uses.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

from strongroom.errors import DomainError, invariant
from strongroom.reserves.merkle import (
    AMOUNT_BYTES,
    HASH_BYTES,
    KEY_BYTES,
    AuditKey,
    account_leaves,
    build_levels,
    leaf_records,
    padding_leaves,
)
from strongroom.reserves.plan import BuildOptions, Built, Plan, Progress, write_top
from strongroom.reserves.treefile import TreeWriter

LeafRow = tuple[bytes, tuple[int, bytes]]  # (order key, (leaf id, level-0 record))
_KEYS: dict[bytes, AuditKey] = {}


class SparkUnavailable(DomainError):
    code = "spark_unavailable"
    status = 503


def _key(secret: bytes) -> AuditKey:
    if secret not in _KEYS:
        _KEYS.clear()
        _KEYS[secret] = AuditKey(secret)
    return _KEYS[secret]


def chunk_leaves(
    secret: bytes, pieces: int, n_assets: int, item: tuple[int, list[str], bytes]
) -> tuple[int, bytes, list[LeafRow]]:
    """One chunk of accounts → (first account, tags, leaf rows)."""
    start, ids, balance_bytes = item
    width = AMOUNT_BYTES * n_assets
    balances = np.frombuffer(balance_bytes, dtype=np.uint8).reshape(len(ids), width)
    result = account_leaves(_key(secret), ids, balances, pieces)
    count = len(ids) * pieces
    tags = np.frombuffer(result.tags, dtype=np.uint8).reshape(len(ids), HASH_BYTES)
    records = leaf_records(
        np.repeat(tags, pieces, axis=0),
        np.tile(np.arange(pieces, dtype=np.uint32), len(ids)),
        np.frombuffer(result.vectors, dtype=np.uint8).reshape(count, width),
    )
    record = HASH_BYTES + width
    rows = [
        (
            result.keys[KEY_BYTES * j : KEY_BYTES * (j + 1)],
            (start * pieces + j, records[record * j : record * (j + 1)]),
        )
        for j in range(count)
    ]
    return start, result.tags, rows


def padding_rows(secret: bytes, n_assets: int, real: int, item: tuple[int, int]) -> list[LeafRow]:
    first, count = item
    tag_bytes, key_bytes = padding_leaves(_key(secret), first, count)
    width = AMOUNT_BYTES * n_assets
    records = leaf_records(
        np.frombuffer(tag_bytes, dtype=np.uint8).reshape(count, HASH_BYTES),
        np.zeros(count, dtype=np.uint32),
        np.zeros((count, width), dtype=np.uint8),
    )
    record = HASH_BYTES + width
    return [
        (
            key_bytes[KEY_BYTES * j : KEY_BYTES * (j + 1)],
            (real + first + j, records[record * j : record * (j + 1)]),
        )
        for j in range(count)
    ]


def to_block(
    block_level: int, row: tuple[LeafRow, int]
) -> tuple[int, tuple[int, bytes, int, bytes]]:
    (key, (leaf_id, record)), position = row
    return position >> block_level, (position, key, leaf_id, record)


def build_block(
    n_assets: int,
    block_level: int,
    block: int,
    rows: Iterator[tuple[int, tuple[int, bytes, int, bytes]]],
) -> Iterator[Any]:
    """One partition = one block: its leaves in position order → every level of its subtree."""
    leaves = sorted((value for _, value in rows), key=lambda value: value[0])
    size = 1 << block_level
    if not leaves:
        return
    positions = [position for position, _, _, _ in leaves]
    invariant(
        positions == list(range(block * size, (block + 1) * size)),
        "a block must hold exactly its own positions",
    )
    levels = build_levels(b"".join(record for _, _, _, record in leaves), n_assets)
    ids = np.array([leaf_id for _, _, leaf_id, _ in leaves], dtype=np.int64).tobytes()
    keys = b"".join(key for _, key, _, _ in leaves)
    yield block, ids, keys, levels


def _session(master: str) -> tuple[Any, bool]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise SparkUnavailable(
            "the spark engine needs pyspark: pip install 'strongroom[spark]'"
        ) from error
    created = SparkContext._active_spark_context is None
    try:
        session = (
            SparkSession.builder.master(master)
            .appName("strongroom-por")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "2g")
            .config("spark.python.worker.reuse", "true")
            .getOrCreate()
        )
    except Exception as error:  # Java missing, bad master URL...
        raise SparkUnavailable(f"cannot start Spark ({master}): {error}") from error
    session.sparkContext.setLogLevel("ERROR")
    return session, created


def spark_build(plan: Plan, writer: TreeWriter, options: BuildOptions, progress: Progress) -> Built:
    session, created = _session(options.spark_master)
    try:
        return _build(session.sparkContext, plan, writer, options, progress)
    finally:
        if created:
            session.stop()


def _build(
    context: Any, plan: Plan, writer: TreeWriter, options: BuildOptions, progress: Progress
) -> Built:
    snapshot, pieces, n_assets = plan.snapshot, plan.pieces, len(plan.snapshot.assets)
    parallelism = max(2, int(context.defaultParallelism))
    chunk = max(1, min(options.chunk_accounts, -(-plan.accounts // (4 * parallelism))))
    chunks = [
        (
            start,
            snapshot.account_ids.chunk(start, min(start + chunk, plan.accounts)),
            snapshot.balances[start : start + chunk].tobytes(),
        )
        for start in range(0, plan.accounts, chunk)
    ]
    progress.phase("leaves (spark)", plan.shape.leaf_count)
    computed = (
        context.parallelize(chunks, max(1, len(chunks)))
        .map(partial(chunk_leaves, plan.secret, pieces, n_assets))
        .cache()
    )
    tag_parts = sorted(computed.map(lambda item: (item[0], item[1])).collect())
    tags = np.frombuffer(b"".join(part for _, part in tag_parts), dtype=np.uint8)
    tags = tags.reshape(plan.accounts, HASH_BYTES)
    leaves = computed.flatMap(lambda item: item[2])
    pad_chunk = max(1, -(-plan.padding // (4 * parallelism)))
    pad_items = [
        (first, min(pad_chunk, plan.padding - first)) for first in range(0, plan.padding, pad_chunk)
    ]
    if pad_items:
        pads = context.parallelize(pad_items, len(pad_items)).flatMap(
            partial(padding_rows, plan.secret, n_assets, plan.real_leaves)
        )
        leaves = leaves.union(pads)
    block_level = plan.block_level(options.block_leaves)
    blocks = plan.shape.leaf_count >> block_level
    placed = (
        leaves.sortByKey(numPartitions=max(1, min(blocks, 4 * parallelism)))
        .zipWithIndex()
        .map(partial(to_block, block_level))
        .partitionBy(blocks, lambda block: block)
        .mapPartitionsWithIndex(partial(build_block, n_assets, block_level))
    )
    positions = np.empty(plan.shape.leaf_count, dtype=np.int64)
    roots: list[bytes] = [b""] * blocks
    previous_key = b""
    size = 1 << block_level
    for block, ids, keys, levels in placed.toLocalIterator():
        for level, records in enumerate(levels):
            writer.write(level, block * (size >> level), records)
        positions[block * size : (block + 1) * size] = np.frombuffer(ids, dtype=np.int64)
        ordered = [keys[KEY_BYTES * j : KEY_BYTES * (j + 1)] for j in range(size)]
        invariant(
            all(a < b for a, b in itertools.pairwise(ordered))
            and (block == 0 or previous_key < ordered[0]),
            "two leaves share an order key",
        )
        previous_key = ordered[-1]
        roots[block] = levels[-1]
        progress.advance(size)
    computed.unpersist()
    invariant(all(roots), "a block is missing")
    root = write_top(plan, writer, block_level, b"".join(roots))
    return Built(positions, tags, root)
