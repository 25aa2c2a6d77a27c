"""MEXC user proofs (JSON: `self`, `pathList`), POR_FORMATS §2.

    h(s)   = first 32 hex characters of SHA-256(utf8(s))
    leaf   = h(proofId + "," + accountId + "," + "COIN:amount,…")   coins sorted, amounts as given
    parent = h(h_left + "," + h_right + "," + "COIN:sum,…")          sums stripTrailingZeros()

`pathList` holds the sibling at each level (self is level 0; `type` 1 = left, 2 = right) and ends
with the root (`type` 3, its level = the depth). A missing level, or a sibling whose hash is "",
is an empty right sibling: its balances are not summed, and BTC, USDT, ETH and USDC are added
(as 0) only when the right child is not empty.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from strongroom_verify.decimals import ZERO, add, java_plain, parse_decimal
from strongroom_verify.javaorder import java_sorted
from strongroom_verify.jsonio import as_dict, as_int, as_list, as_str, field, lower_hex
from strongroom_verify.result import ProofError, Report, Result, run_guarded

FORMAT = "mexc"
HASH_CHARS = 32
ALWAYS_PRESENT = ("BTC", "USDT", "ETH", "USDC")
LEFT, RIGHT, ROOT = 1, 2, 3
MAX_DEPTH = 64
MAX_COINS = 1024


@dataclass(frozen=True)
class _Node:
    hash: str  # "" for an empty node
    balances: dict[str, Decimal]


@dataclass(frozen=True)
class _Entry:
    level: int
    type: int
    node: _Node
    amounts: dict[str, str]


def detect(obj: object) -> bool:
    return isinstance(obj, dict) and "self" in obj and "pathList" in obj


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def verify(obj: object) -> Result:
    report = Report(FORMAT)
    return run_guarded(report, lambda: _verify(obj, report))


def _verify(obj: object, report: Report) -> None:
    doc = as_dict(obj, "proof")
    me = as_dict(field(doc, "self", "proof"), "self")
    amounts = _amounts(field(me, "balances", "self"), "self.balances")
    report.balances = amounts
    siblings, root = _read_path(as_list(field(doc, "pathList", "proof"), "pathList"))
    report.root = root.node.hash
    report.totals = root.amounts
    proof_id = as_str(field(me, "proofId", "self"), "self.proofId")
    account_id = as_str(field(me, "accountId", "self"), "self.accountId")
    published_leaf = as_str(field(me, "hash", "self"), "self.hash")
    leaf = short_hash(f"{proof_id},{account_id},{_pairs(amounts)}")
    report.check(
        "leaf",
        leaf == published_leaf,
        f"leaf hash mismatch: computed {leaf}, published {published_leaf}",
        "leaf hash matches",
    )
    _check_self_type(as_int(field(me, "type", "self"), "self.type"), siblings.get(0), report)
    computed = _fold(_Node(leaf, _decimals(amounts)), siblings, root.level, report)
    report.check(
        "root",
        computed.hash == root.node.hash,
        f"root mismatch: computed {computed.hash}, published {root.node.hash}",
        f"root {computed.hash} matches",
    )
    _check_totals(computed.balances, root.node.balances, report)


def _amounts(value: object, where: str) -> dict[str, str]:
    entries = as_dict(value, where)
    if len(entries) > MAX_COINS:
        raise ProofError(f"{where}: more than {MAX_COINS} coins")
    for coin, amount in entries.items():
        parse_decimal(amount, f"{where}.{coin}")
    return {coin: as_str(amount, f"{where}.{coin}") for coin, amount in entries.items()}


def _decimals(amounts: dict[str, str]) -> dict[str, Decimal]:
    return {coin: Decimal(amount) for coin, amount in amounts.items()}


def _pairs(amounts: dict[str, str]) -> str:
    return ",".join(f"{coin}:{amounts[coin]}" for coin in java_sorted(amounts))


def _read_entry(value: object, position: int) -> _Entry:
    where = f"pathList[{position}]"
    entry = as_dict(value, where)
    level = as_int(field(entry, "level", where), f"{where}.level")
    kind = as_int(field(entry, "type", where), f"{where}.type")
    node_hash = as_str(field(entry, "hash", where), f"{where}.hash")
    if node_hash:
        lower_hex(node_hash, f"{where}.hash", chars=HASH_CHARS)
    amounts = _amounts(field(entry, "balances", where), f"{where}.balances")
    return _Entry(level, kind, _Node(node_hash, _decimals(amounts)), amounts)


def _read_path(items: list[object]) -> tuple[dict[int, _Entry], _Entry]:
    if not 1 <= len(items) <= MAX_DEPTH + 1:
        raise ProofError(f"pathList: expected 1..{MAX_DEPTH + 1} entries")
    entries = [_read_entry(item, position) for position, item in enumerate(items)]
    root = entries[-1]
    if root.type != ROOT or not root.node.hash or not 1 <= root.level <= MAX_DEPTH:
        raise ProofError(f"pathList[{len(items) - 1}]: the last entry must be the root (type 3)")
    siblings: dict[int, _Entry] = {}
    for position, entry in enumerate(entries[:-1]):
        where = f"pathList[{position}]"
        if entry.type not in (LEFT, RIGHT):
            raise ProofError(f"{where}.type: expected 1 (left) or 2 (right)")
        if not 0 <= entry.level < root.level or entry.level in siblings:
            raise ProofError(f"{where}.level: {entry.level} is out of range or repeated")
        siblings[entry.level] = entry
    return siblings, root


def _check_self_type(self_type: int, level_zero: _Entry | None, report: Report) -> None:
    expected = LEFT if level_zero is None or level_zero.type == RIGHT else RIGHT
    report.check(
        "self type",
        self_type == expected,
        f"self type {self_type} contradicts its sibling's side (expected {expected})",
        f"self type {self_type} agrees with its sibling's side",
    )


def _fold(leaf: _Node, siblings: dict[int, _Entry], depth: int, report: Report) -> _Node:
    current = leaf
    for level in range(depth):
        sibling = siblings.get(level)
        if sibling is None:
            current = _parent(current, _Node("", {}))
            continue
        if not sibling.node.hash:
            report.check(
                "empty sibling",
                all(amount.is_zero() for amount in sibling.node.balances.values()),
                f"path level {level}: empty sibling has non-zero balances",
                f"path level {level}: empty sibling has zero balances",
            )
        if sibling.type == LEFT:
            current = _parent(sibling.node, current)
        else:
            current = _parent(current, sibling.node)
    return current


def _parent(left: _Node, right: _Node) -> _Node:
    sums = dict(left.balances)
    if right.hash:
        for coin in ALWAYS_PRESENT:
            sums.setdefault(coin, ZERO)
        for coin, amount in right.balances.items():
            sums[coin] = add(sums.get(coin, ZERO), amount)
    text = ",".join(f"{coin}:{java_plain(sums[coin])}" for coin in java_sorted(sums))
    return _Node(short_hash(f"{left.hash},{right.hash},{text}"), sums)


def _check_totals(
    computed: dict[str, Decimal], published: dict[str, Decimal], report: Report
) -> None:
    for coin in java_sorted(set(computed) | set(published)):
        mine, theirs = computed.get(coin, ZERO), published.get(coin, ZERO)
        report.check(
            "totals",
            mine == theirs,
            f"totals mismatch for {coin}: computed {java_plain(mine)}, published "
            f"{java_plain(theirs)}",
            f"total for {coin} matches",
        )
