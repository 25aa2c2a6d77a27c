"""Privacy properties of the tree: fresh secrets share nothing, the leaf order is not the input
order, and padding looks like any other leaf."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strongroom.reserves.merkle import HASH_BYTES, AuditKey, dec
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.treefile import IndexFile, TreeFile
from strongroom_verify import por_v1
from tests.unit.reserves.helpers import (
    OTHER_SECRET,
    SECRET,
    all_hashes,
    build_audit,
    random_balances,
)


def test_two_secrets_share_no_leaf_or_node_hash(tmp_path: Path) -> None:
    balances = random_balances(500)
    first = build_audit(tmp_path / "a", balances, secret=SECRET)
    second = build_audit(tmp_path / "b", balances, secret=OTHER_SECRET)
    first_hashes, second_hashes = all_hashes(first), all_hashes(second)
    assert len(first_hashes) == 2 * 1024 - 1  # 1000 pieces → 1024 leaves, all distinct
    assert first_hashes.isdisjoint(second_hashes)


def test_the_same_secret_gives_the_same_tree(tmp_path: Path) -> None:
    balances = random_balances(200)
    first = build_audit(tmp_path / "a", balances)
    reordered = dict(reversed(list(balances.items())))
    second = build_audit(tmp_path / "b", reordered)
    assert (first / "tree.bin").read_bytes() == (second / "tree.bin").read_bytes()
    assert (first / "index.bin").read_bytes() == (second / "index.bin").read_bytes()


def _first_piece_positions(directory: Path, count: int) -> list[int]:
    server = ProofServer(directory)
    positions = []
    for number in range(count):
        found = server.leaves_of(f"user-{number:06d}")
        assert found is not None
        positions.append(found[1][0])
    server.close()
    return positions


def test_leaf_order_does_not_follow_the_input_order(tmp_path: Path) -> None:
    count = 400
    directory = build_audit(tmp_path / "a", random_balances(count))
    positions = _first_piece_positions(directory, count)
    assert positions != sorted(positions)
    correlation = np.corrcoef(np.arange(count), np.array(positions))[0, 1]
    assert abs(correlation) < 0.2, correlation
    # a user's pieces are not neighbours either
    server = ProofServer(directory)
    gaps = []
    for number in range(count):
        found = server.leaves_of(f"user-{number:06d}")
        assert found is not None
        gaps.append(abs(found[1][0] - found[1][1]))
    assert np.median(gaps) > 50
    server.close()


def test_padding_leaves_are_ordinary_leaves_spread_through_the_tree(tmp_path: Path) -> None:
    count = 300  # 600 pieces → 1024 leaves, 424 of them padding
    directory = build_audit(tmp_path / "a", random_balances(count))
    tree = TreeFile(directory / "tree.bin")
    index = IndexFile(directory / "index.bin")
    key = AuditKey(SECRET)
    user_leaves = set()
    for number in range(count):
        found = index.lookup(key.user_tag(f"user-{number:06d}"))
        assert found is not None
        user_leaves.update(found)
    padding = sorted(set(range(1024)) - user_leaves)
    assert len(padding) == 424
    # the same record layout, a hash computed exactly like a user's leaf, zero balances
    pad_hashes = {por_v1.leaf_hash(key.pad_tag(n), 0, [0] * 4) for n in range(424)}
    for position in padding:
        record = tree.node(0, position)
        assert len(record) == HASH_BYTES + 16 * 4
        assert dec(record[HASH_BYTES:], 4) == [0, 0, 0, 0]
        assert record[:HASH_BYTES] in pad_hashes
    # shuffled in with the users, not appended after them
    assert padding[0] < 100 and padding[-1] > 924
    halves = sum(1 for p in padding if p < 512), sum(1 for p in padding if p >= 512)
    assert min(halves) > 150, halves
    tree.close()
    index.close()
