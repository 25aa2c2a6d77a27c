"""Bitget user proofs (JSON: `self`, `path`), POR_FORMATS §2.

    h(s)   = first 16 hex characters of SHA-256(utf8(s))
    leaf   = h(encryptUid + "," + nonce + "," + json(balances))
    parent = h(h_left + h_right + "," + json(sum) + "," + level)

`json` writes `{"COIN":"amount",…}`: amounts stripped of trailing zeros, keys in Java 8 HashMap
order. (Bitget's verifier since 2025 keeps the file's key order, a LinkedHashMap: when the leaf
only matches in that order, that order is used throughout.) The root has level 1 and levels
grow downwards, so a parent's level is its children's minus one. `path` lists the siblings from
the bottom up (`role` 1 = the sibling is on the left; 0 = padding, which copies our hash with
zero balances), then the root.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from strongroom_verify.decimals import ZERO, add, java_plain, parse_decimal
from strongroom_verify.javaorder import java8_hashmap_order
from strongroom_verify.jsonio import as_dict, as_int, as_list, as_str, field, lower_hex
from strongroom_verify.result import ProofError, Report, Result, run_guarded

FORMAT = "bitget"
HASH_CHARS = 16
EMPTY, LEFT, RIGHT, ROOT = 0, 1, 2, 3
MAX_DEPTH = 64
MAX_COINS = 1024
_COIN = re.compile(r"[A-Za-z0-9._-]{1,32}")  # nothing JSON would escape

Amounts = dict[str, Decimal]  # in the order the coins were put
KeyOrder = Callable[[Iterable[str]], list[str]]


@dataclass(frozen=True)
class _Node:
    hash: str
    level: int
    role: int | None
    balances: Amounts


def detect(obj: object) -> bool:
    if not isinstance(obj, dict) or "path" not in obj:
        return False
    me = obj.get("self")
    return isinstance(me, dict) and "merkelLeaf" in me


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def insertion_order(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def balances_json(balances: Amounts, key_order: KeyOrder = java8_hashmap_order) -> str:
    coins = key_order(balances)
    return "{" + ",".join(f'"{coin}":"{java_plain(balances[coin])}"' for coin in coins) + "}"


def verify(obj: object) -> Result:
    report = Report(FORMAT)
    return run_guarded(report, lambda: _verify(obj, report))


def _amounts(value: object, where: str) -> Amounts:
    entries = as_dict(value, where)
    if not 1 <= len(entries) <= MAX_COINS:
        raise ProofError(f"{where}: expected 1..{MAX_COINS} coins")
    for coin in entries:
        if not _COIN.fullmatch(coin):
            raise ProofError(f"{where}: {coin[:40]!r} is not a coin code")
    return {
        coin: parse_decimal(amount, f"{where}.{coin}", allow_number=True)
        for coin, amount in entries.items()
    }


def _read_node(value: object, where: str) -> _Node:
    entry = as_dict(value, where)
    node_hash = as_str(field(entry, "merkelLeaf", where), f"{where}.merkelLeaf")
    lower_hex(node_hash, f"{where}.merkelLeaf", chars=HASH_CHARS)
    level = as_int(field(entry, "level", where), f"{where}.level")
    role = as_int(entry["role"], f"{where}.role") if "role" in entry else None
    balances = _amounts(field(entry, "balances", where), f"{where}.balances")
    return _Node(node_hash, level, role, balances)


def _verify(obj: object, report: Report) -> None:
    doc = as_dict(obj, "proof")
    me_obj = as_dict(field(doc, "self", "proof"), "self")
    me = _read_node(me_obj, "self")
    report.balances = {coin: java_plain(amount) for coin, amount in me.balances.items()}
    items = as_list(field(doc, "path", "proof"), "path")
    if not 2 <= len(items) <= MAX_DEPTH + 1:
        raise ProofError(f"path: expected 2..{MAX_DEPTH + 1} entries (siblings, then the root)")
    path = [_read_node(item, f"path[{position}]") for position, item in enumerate(items)]
    root = path[-1]
    report.root = root.hash
    report.totals = {coin: java_plain(amount) for coin, amount in root.balances.items()}
    uid = as_str(field(me_obj, "encryptUid", "self"), "self.encryptUid")
    nonce = as_str(field(me_obj, "nonce", "self"), "self.nonce")
    leaf, key_order = _leaf(f"{uid},{nonce},", me)
    report.check(
        "leaf",
        leaf == me.hash,
        f"leaf hash mismatch: computed {leaf}, published {me.hash}",
        "leaf hash matches" + (" (keys in file order)" if key_order is insertion_order else ""),
    )
    expected_role = RIGHT if path[0].role == LEFT else LEFT
    report.check(
        "self role",
        me.role == expected_role,
        f"self role {me.role} contradicts its sibling's role {path[0].role}",
        f"self role {me.role} agrees with its sibling's role {path[0].role}",
    )
    computed = _fold(_Node(leaf, me.level, me.role, me.balances), path[:-1], key_order, report)
    _check_root(computed, root, report)


def _leaf(prefix: str, me: _Node) -> tuple[str, KeyOrder]:
    """The leaf hash with HashMap key order, or with the file's order if only that matches."""
    leaf = short_hash(prefix + balances_json(me.balances))
    if leaf != me.hash:
        in_file_order = short_hash(prefix + balances_json(me.balances, insertion_order))
        if in_file_order == me.hash:
            return in_file_order, insertion_order
    return leaf, java8_hashmap_order


def _fold(current: _Node, siblings: list[_Node], key_order: KeyOrder, report: Report) -> _Node:
    for number, sibling in enumerate(siblings):
        if sibling.level != current.level:
            report.fail(
                "level", f"path step {number}: level {sibling.level}, expected {current.level}"
            )
        if sibling.role == EMPTY:
            report.check(
                "padding",
                sibling.hash == current.hash
                and all(amount.is_zero() for amount in sibling.balances.values()),
                f"path step {number}: padding must copy our hash with zero balances",
                f"path step {number}: padding copies our hash with zero balances",
            )
        if sibling.role == LEFT:
            current = _parent(sibling, current, key_order)
        else:
            current = _parent(current, sibling, key_order)
    if report.failure_count("level") == 0:
        report.check("level", True, "", f"sibling levels run down from {siblings[0].level}")
    return current


def _parent(left: _Node, right: _Node, key_order: KeyOrder) -> _Node:
    sums: Amounts = {}
    for side in (left, right):
        for coin, amount in side.balances.items():
            sums[coin] = add(sums.get(coin, ZERO), amount)
    level = left.level - 1
    text = f"{left.hash}{right.hash},{balances_json(sums, key_order)},{level}"
    return _Node(short_hash(text), level, None, sums)


def _check_root(computed: _Node, root: _Node, report: Report) -> None:
    report.check(
        "root",
        computed.hash == root.hash,
        f"root mismatch: computed {computed.hash}, published {root.hash}",
        f"root {computed.hash} matches",
    )
    report.check(
        "root level",
        computed.level == root.level == 1,
        f"root level: computed {computed.level}, published {root.level}, expected 1",
    )
    for coin in java8_hashmap_order([*computed.balances, *root.balances]):
        mine, theirs = computed.balances.get(coin, ZERO), root.balances.get(coin, ZERO)
        report.check(
            "totals",
            mine == theirs,
            f"totals mismatch for {coin}: computed {java_plain(mine)}, published "
            f"{java_plain(theirs)}",
            f"total for {coin} matches",
        )
