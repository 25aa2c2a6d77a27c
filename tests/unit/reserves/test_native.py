"""The C kernel (strongroom.reserves._native) gives the same bytes as the Python reference in
merkle.py, on every SHA-256 back end this CPU runs; fixed known answers pin both to the format;
with CI=true the kernel must have been built."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.errors import InvariantViolation
from strongroom.reserves import builder, merkle
from strongroom.reserves.merkle import AuditKey, IdColumn
from strongroom.reserves.snapshot import Snapshot
from tests.conftest import IN_CI, missing
from tests.unit.reserves.helpers import (
    SCALES,
    SECRET,
    build_audit,
    random_balances,
    require_kernel,
)

KERNEL = merkle.load_native()
BACKENDS = KERNEL.backends() if KERNEL is not None else []
U128_MAX = (1 << 128) - 1
AMOUNTS = st.one_of(
    st.just(0),
    st.integers(1, 2**64),
    st.integers(0, U128_MAX),
    st.integers(2**127, U128_MAX),  # about half of the split words are rejected
)
ACCOUNT_IDS = st.text(
    st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=80
)  # any UTF-8, the empty id and ids of several blocks included


def test_ci_builds_the_native_kernel() -> None:
    """CI installs with `pip install -e '.[test]'` on a machine with a compiler and OpenSSL: the
    fast path must be there, not silently replaced by the Python one."""
    try:
        from strongroom.reserves import _native
    except ImportError as error:
        missing(
            f"the C kernel strongroom.reserves._native ({error}; the pure-Python path is used)",
            "install with a C compiler and the OpenSSL headers: pip install -e '.[test]'",
        )
    assert "openssl" in _native.backends()
    if IN_CI and os.environ.get(merkle.NATIVE_ENV, "") != "0":
        assert merkle.kernel is not None


@pytest.fixture(params=BACKENDS or ["none"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each SHA-256 back end of the kernel in turn (without the kernel: ``require_kernel``)."""
    kernel = require_kernel()
    before = kernel.backend()
    kernel.backend(request.param)
    try:
        yield request.param
    finally:
        kernel.backend(before)


@pytest.fixture
def python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merkle, "kernel", None)


def _rows(vectors: list[list[int]], n_assets: int) -> merkle.U8:
    data = b"".join(merkle.enc(vector) for vector in vectors)
    return np.frombuffer(data, np.uint8).reshape(len(vectors), 16 * n_assets).copy()


# ------------------------------------------------------------------------------------------------
# Known answers (computed with the Python reference, which is the code from before the kernel).
# Recomputed when the split stream, the order keys and the padding tags moved from HMAC-SHA256 to
# AES-256 PRFs (merkle.py's docstring): those derivations never leave the prover, and HMAC cost
# about as many SHA-256 compressions as the tree itself. The salt and the tag (POR_FORMATS) did
# not change; the Python path (hashlib + ``cryptography``) and the C kernel (SHA-256 + EVP
# AES-256) were computed independently and agreed before these were pinned.

KAT_IDS = ["alice", "bob", "carol-€", ""]
KAT_VECTORS = [
    [50_000_000, 0, 1234, 2**100 + 7],
    [1, 1, 1, 1],
    [0, 0, 0, U128_MAX],
    [2**127, 3, 0, 0],
]
KAT_ACCOUNTS = "1a9ed3fec92aec2c123e49d5ba8543d6c96e77955aa86a48d16ff0fdbac55793"
KAT_PADDING = "dec187421963a91c679b748ef5c1ad4b18cec62675cea8f29641a6cddaab7a0e"
KAT_ROOT = "69b85b1fdcfc053e5f13ab8cf30b62c74dcaed78345f2f2750d5c142aeaf4dc1"
KAT_TREE = "1c03a1faeb2bc8cf2ca2f92c3133617cbf82d4370469d22de21ccde3b383d6f1"
KAT_INDEX = "9c3de6cefacce07e8745ce8ef3738582a8a4ffbcc82b5901c36c81ff86b6461a"


def _known_answers(directory: Path) -> tuple[str, str, str, str, str]:
    key = AuditKey(SECRET)
    leaves = merkle.account_leaves(key, KAT_IDS, _rows(KAT_VECTORS, 4), 3)
    tags, keys = merkle.padding_leaves(key, 10, 5)
    snapshot = Snapshot.from_mapping(
        SCALES,
        {
            "alice": {"BTC": 50_000_000, "USDT": 10_000_000},
            "bob": {"HKD": 725},
            "carol": {"ETH": 10**18},
        },
    )
    audit = builder.build(
        snapshot,
        directory,
        secret=SECRET,
        audit_id="kat",
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        options=builder.BuildOptions(pieces=2, workers=1),
    )
    return (
        hashlib.sha256(leaves.tags + leaves.keys + leaves.vectors).hexdigest(),
        hashlib.sha256(tags + keys).hexdigest(),
        audit.root.hex(),
        hashlib.sha256((directory / "tree.bin").read_bytes()).hexdigest(),
        hashlib.sha256((directory / "index.bin").read_bytes()).hexdigest(),
    )


def test_known_answers_in_python(tmp_path: Path, python_path: None) -> None:
    assert _known_answers(tmp_path / "a") == (
        KAT_ACCOUNTS,
        KAT_PADDING,
        KAT_ROOT,
        KAT_TREE,
        KAT_INDEX,
    )


def test_known_answers_in_c(tmp_path: Path, backend: str) -> None:
    assert merkle.kernel is not None
    assert _known_answers(tmp_path / "a") == (
        KAT_ACCOUNTS,
        KAT_PADDING,
        KAT_ROOT,
        KAT_TREE,
        KAT_INDEX,
    )


# ------------------------------------------------------------------------------------------------
# Each function: C and Python give the same bytes

# The ``backend`` fixture is chosen once per test, not per example, on purpose.
CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=CHECKS)
QUICK = settings(max_examples=40, deadline=None, suppress_health_check=CHECKS)


@SLOW
@given(
    st.integers(1, 6).flatmap(
        lambda n_assets: st.tuples(
            st.just(n_assets),
            st.lists(
                st.tuples(ACCOUNT_IDS, st.lists(AMOUNTS, min_size=n_assets, max_size=n_assets)),
                min_size=0,
                max_size=70,  # more than one group of 64 accounts
            ),
        )
    ),
    st.integers(1, 16),
    st.binary(min_size=32, max_size=32),
)
def test_account_leaves(
    backend: str, case: tuple[int, list[tuple[str, list[int]]]], pieces: int, secret: bytes
) -> None:
    n_assets, accounts = case
    key = AuditKey(secret)
    ids = [account_id for account_id, _ in accounts]
    rows = _rows([vector for _, vector in accounts], n_assets)
    expected = merkle.account_leaves_py(key, ids, rows, pieces)
    assert merkle.account_leaves(key, ids, rows, pieces) == expected
    assert merkle.account_leaves(key, IdColumn.of(ids), rows, pieces) == expected


def test_account_leaves_of_long_ids_and_many_assets(backend: str) -> None:
    """Messages longer than the kernel's padded buffer take its block-at-a-time path."""
    key = AuditKey(SECRET)
    ids = ["x" * 2000, "é" * 700, "short", "y" * 1001]
    rows = _rows([[n * 10**30 + asset for asset in range(40)] for n in range(4)], 40)
    for pieces in (1, 2, 16):
        assert merkle.account_leaves(key, ids, rows, pieces) == merkle.account_leaves_py(
            key, ids, rows, pieces
        )


def test_account_leaves_into_writes_rows_in_place(backend: str) -> None:
    key = AuditKey(SECRET)
    ids = [f"u{n}" for n in range(10)]
    rows = _rows([[n, 0, n * n] for n in range(1, 11)], 3)
    tags = np.zeros((12, 32), np.uint8)
    keys = np.zeros((24, 16), np.uint8)
    vectors = np.zeros((24, 48), np.uint8)
    merkle.account_leaves_into(key, ids, rows, 2, tags[1:11], keys[2:22], vectors[2:22])
    expected = merkle.account_leaves_py(key, ids, rows, 2)
    assert tags[1:11].tobytes() == expected.tags and not tags[0].any() and not tags[11].any()
    assert keys[2:22].tobytes() == expected.keys
    assert vectors[2:22].tobytes() == expected.vectors
    with pytest.raises(InvariantViolation, match="wrong shape"):
        merkle.account_leaves_into(key, ids, rows, 2, tags[:10], keys[:10], vectors[:20])
    wide = np.zeros((10, 64), np.uint8)
    with pytest.raises(InvariantViolation, match="contiguous"):
        merkle.account_leaves_into(key, ids, rows, 2, wide[:, :32], keys[:20], vectors[:20])


@SLOW
@given(
    st.integers(1, 5).flatmap(
        lambda n_assets: st.lists(
            st.lists(AMOUNTS, min_size=n_assets, max_size=n_assets), min_size=1, max_size=40
        )
    ),
    st.integers(1, 16),
    st.integers(0, 90),  # more than one group of 64 leaves
    st.integers(0, 2**64).map(random.Random),
)
def test_leaf_records_of(
    backend: str, vectors: list[list[int]], pieces: int, padding: int, rng: random.Random
) -> None:
    """Leaves derived again from the tags and balances alone are the leaves that pass A's
    vectors and padding tags give (the split's rejected words included: AMOUNTS near 2^128)."""
    key = AuditKey(SECRET)
    n_assets = len(vectors[0])
    ids = [f"user-{n}" for n in range(len(vectors))]
    rows = _rows(vectors, n_assets)
    first = merkle.account_leaves_py(key, ids, rows, pieces)
    tags = np.frombuffer(first.tags, np.uint8).reshape(len(ids), 32)
    pieces_vectors = np.frombuffer(first.vectors, np.uint8).reshape(-1, 16 * n_assets)
    pad_tags = np.frombuffer(merkle.padding_leaves_py(key, 0, padding)[0], np.uint8)
    real = len(ids) * pieces
    leaf_ids = np.array(rng.sample(range(real + padding), real + padding), dtype=np.int64)
    expected = merkle.leaf_records_by_id_py(
        leaf_ids, tags, pad_tags.reshape(padding, 32), pieces_vectors, pieces
    )
    assert merkle.leaf_records_of_py(key, leaf_ids, tags, rows, pieces, padding) == expected
    out = memoryview(bytearray(len(expected)))
    merkle.leaf_records_of_into(key, leaf_ids, tags, rows, pieces, padding, out)
    assert bytes(out) == expected


def test_leaf_records_of_refuses_bad_arguments(backend: str) -> None:
    assert KERNEL is not None
    tags, rows = np.zeros((2, 32), np.uint8), np.zeros((2, 16), np.uint8)
    out = bytearray(3 * 48)
    with pytest.raises(ValueError, match="leaf id out of range"):
        KERNEL.leaf_records_of_into(
            SECRET, np.array([0, 1, 6], np.int64), tags, rows, 2, 2, 16, out
        )
    with pytest.raises(ValueError, match="out must be a writable buffer"):
        KERNEL.leaf_records_of_into(
            SECRET, np.array([0, 1, 5], np.int64), tags, rows, 2, 2, 16, out[:-1]
        )
    with pytest.raises(ValueError, match="misaligned"):
        KERNEL.leaf_records_of_into(
            SECRET, np.array([0], np.int64), tags, rows[:1], 2, 2, 16, out[:48]
        )
    with pytest.raises(ValueError, match="secret"):
        KERNEL.leaf_records_of_into(
            bytes(31), np.array([0], np.int64), tags, rows, 2, 2, 16, out[:48]
        )


def test_account_leaves_into_without_vectors(backend: str) -> None:
    """Pass A of a threaded build keeps no vectors: the tags and order keys are the same."""
    key = AuditKey(SECRET)
    ids = [f"u{n}" for n in range(70)]
    rows = _rows([[n, 2**127 + n, 0] for n in range(70)], 3)
    expected = merkle.account_leaves_py(key, ids, rows, 3)
    tags, keys = np.zeros((70, 32), np.uint8), np.zeros((210, 16), np.uint8)
    merkle.account_leaves_into(key, ids, rows, 3, tags, keys, None)
    assert tags.tobytes() == expected.tags and keys.tobytes() == expected.keys


@QUICK
@given(st.integers(0, 2**63), st.integers(0, 150), st.binary(min_size=32, max_size=32))
def test_padding_leaves(backend: str, first: int, count: int, secret: bytes) -> None:
    key = AuditKey(secret)
    assert merkle.padding_leaves(key, first, count) == merkle.padding_leaves_py(key, first, count)


@SLOW
@given(
    st.integers(1, 40).flatmap(
        lambda n_assets: st.tuples(
            st.just(n_assets),
            st.lists(
                st.tuples(
                    st.binary(min_size=32, max_size=32),
                    st.integers(0, 2**32 - 1),
                    st.lists(AMOUNTS, min_size=n_assets, max_size=n_assets),
                ),
                min_size=0,
                max_size=9,
            ),
        )
    )
)
def test_leaf_records(backend: str, case: tuple[int, list[tuple[bytes, int, list[int]]]]) -> None:
    n_assets, leaves = case
    tags = np.frombuffer(b"".join(t for t, _, _ in leaves), np.uint8).reshape(len(leaves), 32)
    pieces = np.array([p for _, p, _ in leaves], dtype=np.uint32)
    vectors = _rows([v for _, _, v in leaves], n_assets)
    assert merkle.leaf_records(tags, pieces, vectors) == merkle.leaf_records_py(
        tags, pieces, vectors
    )


@SLOW
@given(
    st.integers(1, 5),
    st.integers(1, 12),
    st.integers(0, 9),
    st.randoms(use_true_random=False),
)
def test_leaf_records_by_id(
    backend: str, pieces: int, accounts: int, padding: int, rng: Any
) -> None:
    real = accounts * pieces
    tags = np.frombuffer(rng.randbytes(32 * accounts), np.uint8).reshape(accounts, 32)
    pad_tags = np.frombuffer(rng.randbytes(32 * padding), np.uint8).reshape(padding, 32)
    vectors = np.frombuffer(rng.randbytes(48 * real), np.uint8).reshape(real, 48)
    leaf_ids = np.array(rng.sample(range(real + padding), real + padding), dtype=np.int64)
    for chosen in (leaf_ids, leaf_ids[: len(leaf_ids) // 2], leaf_ids[:1]):
        assert merkle.leaf_records_by_id(
            chosen, tags, pad_tags, vectors, pieces
        ) == merkle.leaf_records_by_id_py(chosen, tags, pad_tags, vectors, pieces)
    with pytest.raises(ValueError, match="out of range"):
        merkle.leaf_records_by_id(
            np.array([real + padding], np.int64), tags, pad_tags, vectors, pieces
        )
    out = memoryview(bytearray(len(leaf_ids) * (32 + 48)))
    merkle.leaf_records_by_id_into(leaf_ids, tags, pad_tags, vectors, pieces, out)
    assert bytes(out) == merkle.leaf_records_by_id_py(leaf_ids, tags, pad_tags, vectors, pieces)


@SLOW
@given(
    st.sampled_from([1, 4, 40]).flatmap(  # 40 assets: longer than the padded buffer
        lambda n_assets: st.tuples(
            st.just(n_assets),
            st.lists(
                st.tuples(
                    st.binary(min_size=32, max_size=32),
                    st.lists(st.integers(0, U128_MAX // 2), min_size=n_assets, max_size=n_assets),
                ),
                min_size=1,
                max_size=7,
            ).map(lambda pairs: pairs * 2),  # an even count
        )
    )
)
def test_parents(backend: str, case: tuple[int, list[tuple[bytes, list[int]]]]) -> None:
    n_assets, nodes = case
    children = b"".join(h + merkle.enc(v) for h, v in nodes)
    assert merkle.parents(children, n_assets) == merkle.parents_py(children, n_assets)
    out = memoryview(bytearray(len(children) // 2))
    merkle.parents_into(memoryview(children), n_assets, out)
    assert bytes(out) == merkle.parents_py(children, n_assets)
    levels = merkle.build_levels(children[: 2 * (32 + 16 * n_assets)], n_assets)
    assert levels[1] == merkle.parents_py(levels[0], n_assets)


@pytest.mark.parametrize(
    ("left", "right", "total"),
    [
        ((1 << 64) - 1, 1, 1 << 64),  # the carry between the 64-bit halves
        (U128_MAX - 5, 5, U128_MAX),
        (U128_MAX, 0, U128_MAX),
        (U128_MAX, 1, None),
        (2**127, 2**127, None),
    ],
)
def test_parents_carry_and_refuse_overflow(
    backend: str, left: int, right: int, total: int | None
) -> None:
    children = bytes(32) + merkle.enc([7, left]) + bytes(32) + merkle.enc([8, right])
    if total is None:
        with pytest.raises(InvariantViolation, match="exceeds"):
            merkle.parents(children, 2)
        with pytest.raises(InvariantViolation, match="exceeds"):
            merkle.parents_py(children, 2)
        with pytest.raises(InvariantViolation, match="exceeds"):
            merkle.parents_into(memoryview(children), 2, memoryview(bytearray(len(children) // 2)))
    else:
        assert merkle.dec(merkle.parents(children, 2)[32:], 2) == [15, total]
        assert merkle.parents(children, 2) == merkle.parents_py(children, 2)


def test_the_into_functions_refuse_a_wrong_output(backend: str) -> None:
    """An output of the wrong size, read-only or overlapping the input is refused, not written
    past."""
    assert KERNEL is not None
    children = bytearray(4 * (32 + 16))
    with pytest.raises(ValueError, match="out must be a writable buffer of 96 bytes"):
        KERNEL.parents_into(children, 1, bytearray(95))
    with pytest.raises((ValueError, TypeError)):
        KERNEL.parents_into(children, 1, bytes(96))
    with pytest.raises(ValueError, match="overlaps"):
        KERNEL.parents_into(memoryview(children), 1, memoryview(children)[96:192])
    tags = np.zeros((2, 32), np.uint8)
    vectors = np.zeros((2, 16), np.uint8)
    ids = np.array([1, 0], np.int64)
    with pytest.raises(ValueError, match="out must be a writable buffer of 96 bytes"):
        KERNEL.leaf_records_by_id_into(ids, tags, tags[:0], vectors, 1, 16, bytearray(97))


@SLOW
@given(
    st.integers(0, 3000),
    st.sampled_from([16, 32]),
    st.integers(1, 3),
    st.integers(0, 2**64).map(random.Random),  # not st.randoms: 96 KB would exceed its entropy
)
def test_key_order(backend: str, count: int, width: int, threads: int, rng: Any) -> None:
    rows = np.frombuffer(rng.randbytes(count * width), np.uint8).reshape(count, width).copy()
    if count > 2 and rng.random() < 0.5:  # ties on the first 8 bytes
        rows[rng.randrange(count), :8] = rows[0, :8]
    order, duplicate = merkle.key_order(rows, threads)
    expected, expected_duplicate = merkle.key_order_py(rows)
    assert duplicate == expected_duplicate
    if not duplicate:
        assert order.tolist() == expected.tolist()


def test_key_order_of_skewed_and_equal_keys(backend: str) -> None:
    """Keys that are not uniform (all in one bucket) and keys that are equal."""
    count = 1 << 17
    rows = np.zeros((count, 16), np.uint8)
    rows[:, 8:] = np.arange(count, dtype=">u8")[::-1].copy().view(np.uint8).reshape(count, 8)
    order, duplicate = merkle.key_order(rows, 2)
    assert not duplicate and order.tolist() == list(range(count))[::-1]
    rows[5] = rows[77]
    assert merkle.key_order(rows, 2)[1] and merkle.key_order_py(rows)[1]
    with pytest.raises(InvariantViolation, match="share an order key"):
        builder.sort_order(rows, 2)


@QUICK
@given(st.integers(1, 4), st.integers(0, 40), st.randoms(use_true_random=False))
def test_index_entries(backend: str, pieces: int, accounts: int, rng: Any) -> None:
    tags = np.frombuffer(rng.randbytes(32 * accounts), np.uint8).reshape(accounts, 32)
    leaves = np.array(
        [rng.randrange(2**40) for _ in range(accounts * pieces)], dtype=np.int64
    ).reshape(accounts, pieces)
    chosen = np.array(rng.sample(range(accounts), accounts), dtype=np.int64)
    assert merkle.index_entries(chosen, tags, leaves) == merkle.index_entries_py(
        chosen, tags, leaves
    )


# ------------------------------------------------------------------------------------------------
# Whole builds


@pytest.mark.parametrize(("pieces", "workers"), [(2, 1), (3, 2), (1, 2)])
def test_native_and_python_builds_are_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pieces: int, workers: int
) -> None:
    require_kernel()
    balances = random_balances(1200, seed=3)
    at = datetime(2026, 11, 30, tzinfo=UTC)  # root.json holds it
    native = build_audit(
        tmp_path / "c", balances, pieces=pieces, workers=workers, block_leaves=256, created_at=at
    )
    monkeypatch.setattr(merkle, "kernel", None)
    monkeypatch.setenv(merkle.NATIVE_ENV, "0")  # and in the worker processes
    python = build_audit(tmp_path / "py", balances, pieces=pieces, workers=workers, created_at=at)
    for name in ("tree.bin", "index.bin", "root.json"):
        assert (native / name).read_bytes() == (python / name).read_bytes(), name


def test_the_environment_variable_forces_the_python_path() -> None:
    probe = "from strongroom.reserves import merkle; print(merkle.kernel is None)"
    env = {**os.environ, merkle.NATIVE_ENV: "0"}
    forced = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert forced.stdout.strip() == "True"
    env[merkle.NATIVE_ENV] = "1"
    default = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    built = importlib.util.find_spec("strongroom.reserves._native") is not None
    assert default.stdout.strip() == str(not built)
