"""OKX v2: a user file `{hash, nonce, totalBalances, nodes}` plus the whole tree as text.

    userHash = hex(SHA-256(nonce + '{"BTC":"x","ETH":"y","USDT":"z"}'))   of totalBalances
    leaf     = hex(SHA-256(userHash + BTC + ETH + USDT))                 one per user node
    parent   = see okx_common.parent_hash

The tree file has one line per node, `hash,height,{json balances}`, the root first, then each
level from height-1 down to the leaves (height 1), each level listed right to left. A level other
than the root's with an odd number of nodes gets a padding node on the right that copies its
sibling's hash with zero balances. We recompute every node from the leaves up, then find the
user's leaves among them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from strongroom_verify.formats.okx_common import (
    COINS,
    HASH_CHARS,
    Balances,
    add_balances,
    as_mapping,
    balances_json,
    is_zero,
    parent_hash,
    read_balances,
    sha256_hex,
)
from strongroom_verify.jsonio import as_dict, as_list, as_str, field, load_json, lower_hex
from strongroom_verify.result import ProofError, Report, Result, run_guarded

FORMAT = "okx-v2"
MAX_USER_LEAVES = 16
MAX_HEIGHT = 64
_TREE_LINE = re.compile(r"([0-9a-f]{64}),([1-9][0-9]{0,2}),(\{.*\})")


@dataclass(frozen=True)
class _Node:
    hash: str
    balances: Balances
    line: int  # 1-based line in the tree file


def detect(obj: object) -> bool:
    return isinstance(obj, dict) and {"hash", "nonce", "totalBalances", "nodes"} <= set(obj)


def verify(obj: object, tree_text: str) -> Result:
    report = Report(FORMAT)
    return run_guarded(report, lambda: _verify(obj, tree_text, report))


def _verify(obj: object, tree_text: str, report: Report) -> None:
    user = as_dict(obj, "user file")
    total = read_balances(field(user, "totalBalances", "user file"), "totalBalances")
    report.balances = as_mapping(total)
    user_hash = as_str(field(user, "hash", "user file"), "hash")
    nodes = _read_user_nodes(field(user, "nodes", "user file"))
    levels = _read_tree(tree_text)
    root = levels[-1][0]
    report.root = root.hash
    report.totals = as_mapping(root.balances)
    _check_user(user, user_hash, total, nodes, report)
    for height in range(2, len(levels) + 1):
        _check_level(levels[height - 2], levels[height - 1], height, len(levels), report)
    if report.failure_count("tree") == 0:
        count = sum(len(level) for level in levels)
        report.check("tree", True, "", f"all {count} tree lines recomputed from the leaves")
    _check_leaf_padding(levels[0], len(levels), report)
    _locate_user_leaves(nodes, levels[0], report)


def _read_user_nodes(value: object) -> list[_Node]:
    items = as_list(value, "nodes")
    if not 1 <= len(items) <= MAX_USER_LEAVES:
        raise ProofError(f"nodes: expected 1..{MAX_USER_LEAVES} leaves")
    nodes: list[_Node] = []
    for position, item in enumerate(items):
        where = f"nodes[{position}]"
        entry = as_dict(item, where)
        node_hash = as_str(field(entry, "hash", where), f"{where}.hash")
        lower_hex(node_hash, f"{where}.hash", chars=HASH_CHARS)
        balances = read_balances(field(entry, "balances", where), f"{where}.balances")
        nodes.append(_Node(node_hash, balances, 0))
    return nodes


def _read_tree(text: str) -> list[list[_Node]]:
    """Levels from the leaves (index 0, height 1) to the root, each left to right."""
    by_height: dict[int, list[_Node]] = {}
    top = previous = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _TREE_LINE.fullmatch(line.strip())
        if match is None:
            raise ProofError(f"tree line {line_number}: expected hash,height,{{json balances}}")
        height = int(match.group(2))
        top = top or height
        in_order = previous == 0 or previous - height in (0, 1)
        if height > MAX_HEIGHT or not in_order:
            raise ProofError(f"tree line {line_number}: height {height} out of order")
        previous = height
        try:
            balances_obj = load_json(match.group(3))
        except ValueError as error:
            raise ProofError(f"tree line {line_number}: {error}") from None
        balances = read_balances(balances_obj, f"tree line {line_number}")
        by_height.setdefault(height, []).append(_Node(match.group(1), balances, line_number))
    if not top or previous != 1 or top < 2 or len(by_height[top]) != 1:
        raise ProofError("tree: expected one root line first and levels down to height 1")
    return [list(reversed(by_height[height])) for height in range(1, top + 1)]


def _check_user(
    user: dict[str, object], user_hash: str, total: Balances, nodes: list[_Node], report: Report
) -> None:
    nonce = as_str(field(user, "nonce", "user file"), "nonce")
    computed = sha256_hex(nonce + balances_json(total))
    report.check(
        "user hash",
        computed == user_hash,
        f"user hash mismatch: computed {computed}, published {user_hash}",
        "user hash matches",
    )
    for position, node in enumerate(nodes):
        leaf = sha256_hex(user_hash + "".join(node.balances))
        report.check(
            "user leaf",
            leaf == node.hash,
            f"user leaf {position}: leaf hash mismatch: computed {leaf}, published {node.hash}",
            f"user leaf {position}: leaf hash matches",
        )
    summed = nodes[0].balances
    for node in nodes[1:]:
        summed = add_balances(summed, node.balances)
    for coin, mine, theirs in zip(COINS, summed, total, strict=True):
        report.check(
            "user leaves add up",
            mine == theirs,
            f"user leaves do not add up to totalBalances for {coin}: {mine}, not {theirs}",
            f"user leaves add up to totalBalances for {coin}",
        )


def _check_level(
    children: list[_Node], parents: list[_Node], height: int, top: int, report: Report
) -> None:
    pairs, odd = divmod(len(children), 2)
    padded = pairs % 2 == 1 and height < top
    if odd or len(parents) != pairs + padded:
        raise ProofError(
            f"tree height {height}: {len(parents)} nodes cannot be the parents of "
            f"{len(children)} nodes at height {height - 1}"
        )
    for position in range(pairs):
        left, right = children[2 * position], children[2 * position + 1]
        sums = add_balances(left.balances, right.balances)
        _compare_node(
            parents[position],
            parent_hash(left.hash, right.hash, sums, height),
            sums,
            height == top,
            report,
        )
    if padded:
        _check_padding(parents[-1], parents[-2], report)


def _compare_node(
    node: _Node, computed_hash: str, sums: Balances, is_root: bool, report: Report
) -> None:
    where = f"tree line {node.line}"
    if computed_hash != node.hash:
        report.fail(
            "tree",
            f"root mismatch: computed {computed_hash}, published {node.hash}"
            if is_root
            else f"{where}: hash mismatch: computed {computed_hash}, published {node.hash}",
        )
    for coin, mine, theirs in zip(COINS, sums, node.balances, strict=True):
        if mine != theirs:
            report.fail(
                "tree",
                f"totals mismatch for {coin}: computed {mine}, published {theirs}"
                if is_root
                else f"{where}: balance mismatch for {coin}: computed {mine}, published {theirs}",
            )


def _check_padding(node: _Node, sibling: _Node, report: Report) -> None:
    report.check(
        "padding",
        node.hash == sibling.hash and is_zero(node.balances),
        f"tree line {node.line}: padding node must copy its sibling's hash with zero balances",
        f"tree line {node.line}: padding copies its sibling's hash with zero balances",
    )


def _check_leaf_padding(leaves: list[_Node], top: int, report: Report) -> None:
    if len(leaves) % 2:
        raise ProofError(f"tree height 1: an odd number of leaves ({len(leaves)})")
    if leaves[-1].hash == leaves[-2].hash:
        _check_padding(leaves[-1], leaves[-2], report)


def _locate_user_leaves(nodes: list[_Node], leaves: list[_Node], report: Report) -> None:
    hashes = [node.hash for node in nodes]
    report.check(
        "user leaves", len(set(hashes)) == len(hashes), "user leaves repeat", "user leaves distinct"
    )
    positions: dict[tuple[str, Balances], int] = {}
    for position, leaf in enumerate(leaves):
        positions.setdefault((leaf.hash, leaf.balances), position)
    for number, node in enumerate(nodes):
        found = positions.get((node.hash, node.balances))
        report.check(
            "user leaf in tree",
            found is not None,
            f"user leaf {number} ({node.hash}) is not among the tree's leaves",
            f"user leaf {number} is leaf {found} of the tree",
        )
