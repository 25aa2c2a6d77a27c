"""Test-only generators: build small trees in each format straight from POR_FORMATS.md and emit
the proof files a user would get.

They deliberately do not import strongroom_verify (hashing, amounts, key orders are written out
again here from the spec), so that a test that passes means two independent readings of the
spec agree. Randomness comes from a seeded random.Random: reproducible, and fine for tests
(the real builder uses a CSPRNG).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import struct
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

Json = dict[str, object]

# ------------------------------------------------------------------------------------------------
# strongroom-por-v1


def _u128(amount: int) -> bytes:
    return amount.to_bytes(16, "big")


def _enc(vector: tuple[int, ...]) -> bytes:
    return b"".join(_u128(amount) for amount in vector)


def por_user_salt(audit_secret: bytes, account_id: str) -> bytes:
    message = b"strongroom-por-v1/salt" + account_id.encode()
    return hmac.new(audit_secret, message, hashlib.sha256).digest()


def por_user_tag(user_salt: bytes, account_id: str) -> bytes:
    return hashlib.sha256(
        b"strongroom-por-v1/user" + b"\x00" + user_salt + account_id.encode()
    ).digest()


def por_leaf(tag: bytes, piece: int, vector: tuple[int, ...]) -> bytes:
    return hashlib.sha256(b"\x00" + tag + piece.to_bytes(4, "big") + _enc(vector)).digest()


def por_node(
    h_left: bytes, b_left: tuple[int, ...], h_right: bytes, b_right: tuple[int, ...]
) -> bytes:
    return hashlib.sha256(b"\x01" + h_left + _enc(b_left) + h_right + _enc(b_right)).digest()


def _split(amount: int, pieces: int, rng: random.Random) -> list[int]:
    cuts = sorted(rng.randint(0, amount) for _ in range(pieces - 1))
    bounds = [0, *cuts, amount]
    return [bounds[i + 1] - bounds[i] for i in range(pieces)]


@dataclass
class PorV1Tree:
    audit_id: str
    assets: list[tuple[str, int]]
    levels: list[list[tuple[bytes, tuple[int, ...]]]]  # level 0 = leaves
    placements: dict[str, list[tuple[int, int]]]  # account -> [(leaf index, piece)]
    salts: dict[str, bytes]
    balances: dict[str, tuple[int, ...]]

    @property
    def root(self) -> bytes:
        return self.levels[-1][0][0]

    @property
    def totals(self) -> tuple[int, ...]:
        return self.levels[-1][0][1]

    def amounts(self, vector: tuple[int, ...]) -> dict[str, str]:
        out: dict[str, str] = {}
        for (code, scale), amount in zip(self.assets, vector, strict=True):
            whole, fraction = divmod(amount, 10**scale)
            out[code] = f"{whole}.{fraction:0{scale}d}" if scale else str(whole)
        return out

    def path(self, index: int) -> list[Json]:
        steps: list[Json] = []
        for level in self.levels[:-1]:
            sibling_hash, sibling_vector = level[index ^ 1]
            steps.append({"hash": sibling_hash.hex(), "balances": self.amounts(sibling_vector)})
            index //= 2
        return steps

    def proof(self, account_id: str) -> Json:
        leaves: list[Json] = []
        for index, piece in self.placements[account_id]:
            leaves.append(
                {
                    "index": index,
                    "piece": piece,
                    "balances": self.amounts(self.levels[0][index][1]),
                    "path": self.path(index),
                }
            )
        return {
            "format": "strongroom-por-v1",
            "audit_id": self.audit_id,
            "assets": [{"code": code, "scale": scale} for code, scale in self.assets],
            "root": self.root.hex(),
            "totals": self.amounts(self.totals),
            "leaf_count": len(self.levels[0]),
            "account_id": account_id,
            "user_salt": self.salts[account_id].hex(),
            "balances": self.amounts(self.balances[account_id]),
            "leaves": leaves,
        }


def por_build_levels(
    leaves: list[tuple[bytes, tuple[int, ...]]],
) -> list[list[tuple[bytes, tuple[int, ...]]]]:
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = []
        for i in range(0, len(below), 2):
            (hl, bl), (hr, br) = below[i], below[i + 1]
            vector = tuple(a + b for a, b in zip(bl, br, strict=True))
            above.append((por_node(hl, bl, hr, br), vector))
        levels.append(above)
    return levels


def build_por_v1(
    accounts: dict[str, dict[str, int]],
    assets: list[tuple[str, int]],
    *,
    pieces: int = 2,
    seed: int = 7,
    audit_secret: bytes = b"an audit secret of 32 bytes ....",
) -> PorV1Tree:
    """accounts: account id -> {asset code: amount in minor units}."""
    rng = random.Random(seed)
    entries: list[tuple[str, int, tuple[int, ...], bytes]] = []
    salts: dict[str, bytes] = {}
    balances: dict[str, tuple[int, ...]] = {}
    for account_id, amounts in accounts.items():
        vector = tuple(amounts.get(code, 0) for code, _ in assets)
        if not any(vector):
            continue  # all-zero accounts are left out
        salts[account_id] = por_user_salt(audit_secret, account_id)
        balances[account_id] = vector
        tag = por_user_tag(salts[account_id], account_id)
        columns = [_split(amount, pieces, rng) for amount in vector]
        for piece in range(pieces):
            piece_vector = tuple(column[piece] for column in columns)
            entries.append((account_id, piece, piece_vector, por_leaf(tag, piece, piece_vector)))
    rng.shuffle(entries)
    size = max(2, 1 << (len(entries) - 1).bit_length())
    zeros = tuple(0 for _ in assets)
    leaves = [(leaf, vector) for _, _, vector, leaf in entries]
    while len(leaves) < size:
        leaves.append((por_leaf(rng.randbytes(32), 0, zeros), zeros))
    placements: dict[str, list[tuple[int, int]]] = {}
    for index, (account_id, piece, _, _) in enumerate(entries):
        placements.setdefault(account_id, []).append((index, piece))
    return PorV1Tree("2026-11-30", assets, por_build_levels(leaves), placements, salts, balances)


# ------------------------------------------------------------------------------------------------
# OKX (v1 and v2)

OKX_COINS = ("BTC", "ETH", "USDT")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Decimal) -> str:
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def okx_sum(left: tuple[str, ...], right: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(
        _plain((Decimal(a) + Decimal(b)).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN))
        for a, b in zip(left, right, strict=True)
    )


def okx_json(balances: tuple[str, ...]) -> str:
    return json.dumps(dict(zip(OKX_COINS, balances, strict=True)), separators=(",", ":"))


def okx_parent(left: str, right: str, sums: tuple[str, ...], height: int) -> str:
    return _sha(left + right + "".join(sums) + str(height))


@dataclass
class OkxNode:
    hash: str
    balances: tuple[str, ...]
    padding: bool = False


def _okx_levels(leaves: list[OkxNode], *, pad_leaves: bool) -> list[list[OkxNode]]:
    """Level 0 holds the leaves (height 1). Odd levels below the root get a padding node that
    copies its left neighbour's hash with zero balances."""
    zero = ("0", "0", "0")
    levels = [list(leaves)]
    if pad_leaves and len(levels[0]) % 2:
        levels[0].append(OkxNode(levels[0][-1].hash, zero, padding=True))
    while len(levels[-1]) > 1:
        below, height = levels[-1], len(levels) + 1
        above = []
        for i in range(0, len(below), 2):
            left, right = below[i], below[i + 1]
            sums = okx_sum(left.balances, right.balances)
            above.append(OkxNode(okx_parent(left.hash, right.hash, sums, height), sums))
        if len(above) > 1 and len(above) % 2:
            above.append(OkxNode(above[-1].hash, zero, padding=True))
        levels.append(above)
    return levels


def build_okx_v1(users: list[tuple[str, tuple[str, str, str]]]) -> list[Json]:
    """users: (nonce, (BTC, ETH, USDT)). Returns one proof per user, in order."""
    leaves = [OkxNode(_sha(nonce + okx_json(b)), b) for nonce, b in users]
    levels = _okx_levels(leaves, pad_leaves=True)
    proofs: list[Json] = []
    for position, (nonce, balances) in enumerate(users):
        path: list[Json] = []
        index = position
        for height, level in enumerate(levels[:-1], start=1):
            sibling = level[index ^ 1]
            kind = 1 if index % 2 else (4 if sibling.padding else 2)
            path.append(_okx_node_json(sibling, kind, height))
            index //= 2
        path.append(_okx_node_json(levels[-1][0], 3, len(levels)))
        me = {
            "balances": dict(zip(OKX_COINS, balances, strict=True)),
            "nonce": nonce,
            "hash": leaves[position].hash,
            "type": 2 if position % 2 else 1,
            "height": 1,
        }
        proofs.append({"path": path, "self": me})
    return proofs


def _okx_node_json(node: OkxNode, kind: int, height: int) -> Json:
    return {
        "auditId": "test",
        "balances": dict(zip(OKX_COINS, node.balances, strict=True)),
        "type": kind,
        "hash": node.hash,
        "height": height,
    }


def _split_8(amount: str, rng: random.Random) -> tuple[str, str]:
    units = int(Decimal(amount) * 100_000_000)
    first = rng.randint(0, units)
    return _plain(Decimal(first) / 100_000_000), _plain(Decimal(units - first) / 100_000_000)


def build_okx_v2(
    users: list[tuple[str, tuple[str, str, str]]], seed: int = 3
) -> tuple[str, list[Json]]:
    """users: (nonce, total (BTC, ETH, USDT)). Returns (tree text, one user file per user)."""
    rng = random.Random(seed)
    files: list[Json] = []
    leaves: list[OkxNode] = []
    for nonce, total in users:
        user_hash = _sha(nonce + okx_json(total))
        halves = [_split_8(amount, rng) for amount in total]
        nodes = []
        for part in (0, 1):
            balances = tuple(half[part] for half in halves)
            leaf = OkxNode(_sha(user_hash + "".join(balances)), balances)
            leaves.append(leaf)
            nodes.append(
                {"balances": dict(zip(OKX_COINS, balances, strict=True)), "hash": leaf.hash}
            )
        totals = dict(zip(OKX_COINS, total, strict=True))
        files.append({"hash": user_hash, "nodes": nodes, "nonce": nonce, "totalBalances": totals})
    rng.shuffle(leaves)
    levels = _okx_levels(leaves, pad_leaves=True)
    lines = []
    for height in range(len(levels), 0, -1):
        for node in reversed(levels[height - 1]):
            lines.append(f"{node.hash},{height},{okx_json(node.balances)}")
    return "\n".join(lines) + "\n", files


# ------------------------------------------------------------------------------------------------
# Bitget

# Java 8 HashMap order for these four coins (POR_FORMATS §2): exactly this order.
BITGET_COINS = ("BTC", "ETH", "USDT", "USDC")


def _h16(text: str) -> str:
    return _sha(text)[:16]


def bitget_json(balances: dict[str, str], order: tuple[str, ...] = BITGET_COINS) -> str:
    keys = [coin for coin in order if coin in balances]
    return "{" + ",".join(f'"{c}":"{_plain(Decimal(balances[c]))}"' for c in keys) + "}"


@dataclass
class BitgetNode:
    hash: str
    balances: dict[str, str]
    padding: bool = False
    extra: Json = field(default_factory=dict)


def build_bitget(
    users: list[tuple[str, str, dict[str, str]]], order: tuple[str, ...] = BITGET_COINS
) -> list[Json]:
    """users: (encryptUid, nonce, balances). Returns one proof per user, in order."""
    leaves = [
        BitgetNode(_h16(f"{uid},{nonce},{bitget_json(b, order)}"), b) for uid, nonce, b in users
    ]
    depth = max(1, math.ceil(math.log2(len(leaves))))
    leaf_level = depth + 1
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = list(levels[-1])
        if len(below) % 2:
            below.append(BitgetNode(below[-1].hash, dict.fromkeys(order, "0"), padding=True))
            levels[-1] = below
        level = leaf_level - len(levels)
        above = []
        for i in range(0, len(below), 2):
            left, right = below[i], below[i + 1]
            sums = {
                c: _plain(Decimal(left.balances.get(c, "0")) + Decimal(right.balances.get(c, "0")))
                for c in order
                if c in left.balances or c in right.balances
            }
            text = f"{left.hash}{right.hash},{bitget_json(sums, order)},{level}"
            above.append(BitgetNode(_h16(text), sums))
        levels.append(above)
    proofs: list[Json] = []
    for position, (uid, nonce, balances) in enumerate(users):
        path: list[Json] = []
        index = position
        for number, level_nodes in enumerate(levels[:-1]):
            sibling = level_nodes[index ^ 1]
            role = 1 if index % 2 else (0 if sibling.padding else 2)
            path.append(_bitget_node_json(sibling, leaf_level - number, role))
            index //= 2
        path.append(_bitget_node_json(levels[-1][0], 1, 3))
        me = {
            "auditId": "test",
            "balances": balances,
            "encryptUid": uid,
            "level": leaf_level,
            "merkelLeaf": leaves[position].hash,
            "nonce": nonce,
            "role": 2 if position % 2 else 1,
        }
        proofs.append({"path": path, "self": me})
    return proofs


def _bitget_node_json(node: BitgetNode, level: int, role: int) -> Json:
    return {
        "auditId": "test",
        "balances": node.balances,
        "level": level,
        "merkelLeaf": node.hash,
        "role": role,
    }


# ------------------------------------------------------------------------------------------------
# BitMEX


def bitmex_sub_nonce(account_nonce: bytes, block_height: int, account: int) -> bytes:
    return hashlib.sha256(
        account_nonce + struct.pack("<Q", block_height) + struct.pack("<Q", account)
    ).digest()


def bitmex_leaf(key: bytes, value: int, index: int) -> bytes:
    message = struct.pack("<Q", value) + struct.pack("<Q", index)
    return hmac.new(key, message, hashlib.sha256).digest()


def bitmex_node(hl: bytes, vl: int, hr: bytes, vr: int) -> bytes:
    return hashlib.sha256(hl + struct.pack("<Q", vl) + hr + struct.pack("<Q", vr)).digest()


def _bitmex_split(liabilities: list[tuple[int, int]], rng: random.Random) -> list[tuple[int, int]]:
    """Split the largest balances (each part at least 1 satoshi) until the leaf count is a power
    of two with every balance split at least once where it can be."""
    items = [item for item in liabilities if item[1] > 0]
    target = 1 << max(1, math.ceil(math.log2(len(items) * 2)))
    while len(items) < target:
        items.sort(key=lambda item: item[1])
        account, value = items.pop()
        assert value > 1, "cannot split further"
        first = rng.randint(1, value - 1)
        items += [(account, first), (account, value - first)]
    return items


def build_bitmex(
    liabilities: dict[int, int], nonces: dict[int, bytes], block_height: int, seed: int = 5
) -> tuple[str, dict[int, list[int]]]:
    """Returns (tree text, account -> its leaf indices)."""
    rng = random.Random(seed)
    items = _bitmex_split(sorted(liabilities.items()), rng)
    rng.shuffle(items)
    leaves = []
    owners: dict[int, list[int]] = {}
    for index, (account, value) in enumerate(items):
        key = bitmex_sub_nonce(nonces[account], block_height, account)
        leaves.append((bitmex_leaf(key, value, index), value))
        owners.setdefault(account, []).append(index)
    rows = [leaves]
    while len(rows[-1]) > 1:
        below = rows[-1]
        rows.append(
            [
                (bitmex_node(*below[i], *below[i + 1]), below[i][1] + below[i + 1][1])
                for i in range(0, len(below), 2)
            ]
        )
    lines = [f"block_height:{block_height}"]
    for row in reversed(rows):
        lines += [f"{node_hash.hex()},{value}" for node_hash, value in row]
    return "\n".join(lines) + "\n", owners
