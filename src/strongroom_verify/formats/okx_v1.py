"""OKX v1 user proofs (JSON: `self`, `path`), POR_FORMATS §2.

    leaf   = hex(SHA-256(nonce + '{"BTC":"x","ETH":"y","USDT":"z"}'))
    parent = see okx_common.parent_hash; a parent's height is its children's plus one

`path` lists the sibling at each height from 1 up (`type` 1 = left, 2 = right, 4 = padding, on
the right) and ends with the root (`type` 3), whose hash, balances and height must match.
"""

from __future__ import annotations

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
from strongroom_verify.jsonio import as_dict, as_int, as_list, as_str, field, lower_hex
from strongroom_verify.result import ProofError, Report, Result, run_guarded

FORMAT = "okx-v1"
LEFT, RIGHT, ROOT, PADDING = 1, 2, 3, 4
MAX_DEPTH = 64


@dataclass(frozen=True)
class _Step:
    type: int
    hash: str
    height: int
    balances: Balances


def detect(obj: object) -> bool:
    if not isinstance(obj, dict) or "path" not in obj:
        return False
    me = obj.get("self")
    return isinstance(me, dict) and "hash" in me and "merkelLeaf" not in me


def verify(obj: object) -> Result:
    report = Report(FORMAT)
    return run_guarded(report, lambda: _verify(obj, report))


def _read_step(value: object, position: int) -> _Step:
    where = f"path[{position}]"
    entry = as_dict(value, where)
    kind = as_int(field(entry, "type", where), f"{where}.type")
    node_hash = as_str(field(entry, "hash", where), f"{where}.hash")
    lower_hex(node_hash, f"{where}.hash", chars=HASH_CHARS)
    height = as_int(field(entry, "height", where), f"{where}.height")
    balances = read_balances(field(entry, "balances", where), f"{where}.balances")
    return _Step(kind, node_hash, height, balances)


def _read_path(value: object) -> list[_Step]:
    items = as_list(value, "path")
    if not 2 <= len(items) <= MAX_DEPTH + 1:
        raise ProofError(f"path: expected 2..{MAX_DEPTH + 1} entries (siblings, then the root)")
    steps = [_read_step(item, position) for position, item in enumerate(items)]
    if steps[-1].type != ROOT:
        raise ProofError(f"path[{len(steps) - 1}].type: the last entry must be the root (type 3)")
    for position, step in enumerate(steps[:-1]):
        if step.type not in (LEFT, RIGHT, PADDING):
            raise ProofError(f"path[{position}].type: expected 1, 2 or 4")
    return steps


def _verify(obj: object, report: Report) -> None:
    doc = as_dict(obj, "proof")
    me = as_dict(field(doc, "self", "proof"), "self")
    own = read_balances(field(me, "balances", "self"), "self.balances")
    report.balances = as_mapping(own)
    steps = _read_path(field(doc, "path", "proof"))
    root = steps[-1]
    report.root = root.hash
    report.totals = as_mapping(root.balances)
    nonce = as_str(field(me, "nonce", "self"), "self.nonce")
    published = as_str(field(me, "hash", "self"), "self.hash")
    leaf = sha256_hex(nonce + balances_json(own))
    report.check(
        "leaf",
        leaf == published,
        f"leaf hash mismatch: computed {leaf}, published {published}",
        "leaf hash matches",
    )
    _check_self(me, steps[0], report)
    computed_hash, computed = _fold(leaf, own, steps[:-1], report)
    report.check(
        "root",
        computed_hash == root.hash,
        f"root mismatch: computed {computed_hash}, published {root.hash}",
        f"root {computed_hash} matches",
    )
    report.check(
        "root height",
        root.height == len(steps),
        f"root height {root.height}, expected {len(steps)}",
    )
    for coin, mine, theirs in zip(COINS, computed, root.balances, strict=True):
        report.check(
            "totals",
            mine == theirs,
            f"totals mismatch for {coin}: computed {mine}, published {theirs}",
            f"total for {coin} matches",
        )


def _check_self(me: dict[str, object], first: _Step, report: Report) -> None:
    self_type = as_int(field(me, "type", "self"), "self.type")
    expected = RIGHT if first.type == LEFT else LEFT
    report.check(
        "self type",
        self_type == expected,
        f"self type {self_type} contradicts its sibling's type {first.type}",
        f"self type {self_type} agrees with its sibling's type {first.type}",
    )
    height = as_int(field(me, "height", "self"), "self.height")
    report.check("self height", height == 1, f"self height {height}, expected 1", "self height 1")


def _fold(leaf: str, own: Balances, siblings: list[_Step], report: Report) -> tuple[str, Balances]:
    current_hash, current = leaf, own
    for number, step in enumerate(siblings):
        if step.height != number + 1:
            report.fail(
                "height", f"path step {number}: height {step.height}, expected {number + 1}"
            )
        if step.type == PADDING:
            report.check(
                "padding",
                is_zero(step.balances),
                f"path step {number}: padding sibling has non-zero balances",
                f"path step {number}: padding sibling has zero balances",
            )
        sums = add_balances(current, step.balances)
        if step.type == LEFT:
            current_hash = parent_hash(step.hash, current_hash, sums, number + 2)
        else:
            current_hash = parent_hash(current_hash, step.hash, sums, number + 2)
        current = sums
    if report.failure_count("height") == 0:
        report.check("height", True, "", f"sibling heights run 1..{len(siblings)}")
    return current_hash, current
