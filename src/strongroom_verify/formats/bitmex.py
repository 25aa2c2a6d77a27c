"""BitMEX liabilities trees (CSV text), POR_FORMATS §2.

The file is a `block_height:N` line, then `hash,value` lines: the root first, then each level left
to right down to the leaves. One asset, in satoshis (XBt).

    sub_nonce = SHA-256(account_nonce ‖ u64le(block_height) ‖ u64le(account))
    leaf      = HMAC-SHA256(sub_nonce, u64le(value) ‖ u64le(leaf_index))
    node      = SHA-256(h_left ‖ u64le(v_left) ‖ h_right ‖ u64le(v_right))

We recompute every node from the leaves to the root, then scan the leaves for HMAC matches. The
nonce is taken as the account nonce (as above); when nothing matches that way, it is tried as the
per-proof sub-nonce, which is what BitMEX hands its users as "nonce".
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from strongroom_verify.result import ProofError, Report, Result, run_guarded

FORMAT = "bitmex"
UNIT = "XBt"
U64_MAX = (1 << 64) - 1
MAX_HEIGHT = 40
_HEADER = re.compile(r"block_height:([0-9]{1,20})")
_NODE_LINE = re.compile(r"([0-9a-f]{64}),([0-9]{1,20})")


@dataclass(frozen=True)
class _Node:
    hash: bytes
    value: int
    line: int  # 1-based line in the file


def detect(obj: object) -> bool:
    return isinstance(obj, str) and obj.startswith("block_height:")


def sub_nonce(account_nonce: bytes, block_height: int, account: int) -> bytes:
    payload = account_nonce + struct.pack("<Q", block_height) + struct.pack("<Q", account)
    return hashlib.sha256(payload).digest()


def leaf_hash(key: bytes, value: int, leaf_index: int) -> bytes:
    message = struct.pack("<Q", value) + struct.pack("<Q", leaf_index)
    return hmac.new(key, message, hashlib.sha256).digest()


def node_hash(h_left: bytes, v_left: int, h_right: bytes, v_right: int) -> bytes:
    payload = h_left + struct.pack("<Q", v_left) + h_right + struct.pack("<Q", v_right)
    return hashlib.sha256(payload).digest()


def verify(text: str, account: int, nonce: bytes) -> Result:
    """Verify a BitMEX tree for one account (0..2^64-1) and its nonce."""
    report = Report(FORMAT)
    return run_guarded(report, lambda: _verify(text, account, nonce, report))


def _verify(text: str, account: int, nonce: bytes, report: Report) -> None:
    if not 0 <= account <= U64_MAX:
        raise ProofError(f"account {account} does not fit in a u64")
    block_height, rows = _read_tree(text)
    root = rows[0][0]
    report.root = root.hash.hex()
    report.totals = {UNIT: str(root.value)}
    for depth in range(len(rows) - 1, 0, -1):
        _check_row(rows[depth], rows[depth - 1], depth, report)
    if report.failure_count("tree") == 0:
        nodes = (1 << len(rows)) - 1
        report.check("tree", True, "", f"all {nodes} nodes recomputed from the leaves")
    _match_leaves(rows[-1], block_height, account, nonce, report)


def _read_tree(text: str) -> tuple[int, list[list[_Node]]]:
    """Rows from the root (row 0) down to the leaves, each left to right."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    header = _HEADER.fullmatch(lines[0].strip()) if lines else None
    if header is None or int(header.group(1)) > U64_MAX:
        raise ProofError("line 1: expected block_height:N")
    nodes: list[_Node] = []
    for line_number, line in enumerate(lines[1:], start=2):
        match = _NODE_LINE.fullmatch(line.strip())
        if match is None or int(match.group(2)) > U64_MAX:
            raise ProofError(f"tree line {line_number}: expected hash,value (a u64)")
        nodes.append(_Node(bytes.fromhex(match.group(1)), int(match.group(2)), line_number))
    row_count = (len(nodes) + 1).bit_length() - 1
    if not nodes or len(nodes) + 1 != 1 << row_count or row_count > MAX_HEIGHT + 1:
        raise ProofError(f"tree: {len(nodes)} nodes is not a full binary tree (2^k - 1)")
    rows = [nodes[(1 << row) - 1 : (1 << (row + 1)) - 1] for row in range(row_count)]
    return int(header.group(1)), rows


def _check_row(children: list[_Node], parents: list[_Node], depth: int, report: Report) -> None:
    for position, parent in enumerate(parents):
        left, right = children[2 * position], children[2 * position + 1]
        value = left.value + right.value
        computed = node_hash(left.hash, left.value, right.hash, right.value)
        where = f"tree line {parent.line} (row {depth - 1})"
        if computed != parent.hash:
            report.fail(
                "tree",
                f"root mismatch: computed {computed.hex()}, published {parent.hash.hex()}"
                if depth == 1
                else f"{where}: hash mismatch: computed {computed.hex()}, published "
                f"{parent.hash.hex()}",
            )
        if value != parent.value or value > U64_MAX:
            report.fail(
                "tree",
                f"totals mismatch for {UNIT}: computed {value}, published {parent.value}"
                if depth == 1
                else f"{where}: value mismatch: computed {value}, published {parent.value}",
            )


def _match_leaves(
    leaves: list[_Node], block_height: int, account: int, nonce: bytes, report: Report
) -> None:
    keys = (
        ("as the account nonce", sub_nonce(nonce, block_height, account)),
        ("as the per-proof sub-nonce", nonce),
    )
    for how, key in keys:
        matches = [
            index
            for index, leaf in enumerate(leaves)
            if hmac.compare_digest(leaf_hash(key, leaf.value, index), leaf.hash)
        ]
        if matches:
            total = sum(leaves[index].value for index in matches)
            report.balances = {UNIT: str(total)}
            report.check(
                "leaf match",
                True,
                "",
                f"{len(matches)} leaves match account {account} (nonce used {how}): "
                f"{', '.join(str(index) for index in matches[:20])}",
            )
            return
    report.fail("leaf match", f"no leaf matches account {account} with this nonce")
