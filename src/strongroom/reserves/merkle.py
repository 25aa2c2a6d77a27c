"""The strongroom-por-v1 Merkle sum tree (POR_FORMATS §1): pure functions, no I/O.

Every random choice is derived from one audit secret, so any engine (local processes, Spark)
builds the same tree, byte for byte, from the same snapshot and secret:

    user_salt  = HMAC(secret, "strongroom-por-v1/salt" ‖ account_id)        (POR_FORMATS)
    user_tag   = H("strongroom-por-v1/user" ‖ 0x00 ‖ user_salt ‖ account_id)  (POR_FORMATS)
    split      = 128-bit words, two per block HMAC(secret, "strongroom-por-v1/split" ‖ user_tag
                 ‖ u32be(j)), j = 0, 1, ...; per asset (in order) with balance b > 0, k - 1 draws
                 uniform in 0..b (a word w below L = 2^128 - 2^128 mod (b+1) gives w mod (b+1),
                 a word >= L is rejected), sorted; the pieces are the gaps 0 → c1 → … → b
    order key  = HMAC(secret, "strongroom-por-v1/order" ‖ tag ‖ u32be(piece))
    padding    = leaves with tag = HMAC(secret, "strongroom-por-v1/pad" ‖ u64be(p)), piece 0 and a
                 zero vector, for p = 0 .. leaf_count - real_leaves - 1

All leaves, padding included, are ordered by their order key (bytewise); padding is shuffled in
with the users' pieces rather than appended, so where the zero subtrees sit says nothing about how
many users there are. Level 0 holds the leaves, level ``height`` the root; a node's record in the
tree file is ``hash(32) ‖ enc(B)``, so a parent's message is ``0x01 ‖ left record ‖ right record``
and two adjacent children are one contiguous slice.

The hot loops hash with ``hashlib`` directly and add vectors with numpy: the primitives of
``strongroom_verify.por_v1`` check every argument and would triple the build time; the unit tests
hold these fast paths equal to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from strongroom.errors import invariant
from strongroom_verify import por_v1

if TYPE_CHECKING:
    from _hashlib import HASH

HASH_BYTES = 32
AMOUNT_BYTES = 16
SECRET_BYTES = 32
KEY_BYTES = 16
"""Leaves are sorted on the first 16 bytes of their order key; the builders check that no two
are equal (a 2^-128 event per pair), so this is the order of the whole key."""
MAX_PIECES = por_v1.MAX_PIECES
MAX_HEIGHT = por_v1.MAX_HEIGHT
MAX_ASSETS = por_v1.MAX_ASSETS
MAX_DRAW_ATTEMPTS = 512
"""Each word is accepted with probability > 1/2: 512 rejections in a row do not happen."""
_TWO_128 = 1 << 128

ORDER_DOMAIN = b"strongroom-por-v1/order"
PAD_DOMAIN = b"strongroom-por-v1/pad"
SPLIT_DOMAIN = b"strongroom-por-v1/split"
LEAF_PREFIX = por_v1.LEAF_PREFIX
NODE_PREFIX = por_v1.NODE_PREFIX

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]

_sha256 = hashlib.sha256


def record_bytes(n_assets: int) -> int:
    """Size of one node in the tree file: its hash and its balance vector."""
    return HASH_BYTES + AMOUNT_BYTES * n_assets


@dataclass(frozen=True, slots=True)
class Shape:
    """Geometry of a tree: ``leaf_count`` = 2^height leaves, levels stored leaves first."""

    n_assets: int
    leaf_count: int

    def __post_init__(self) -> None:
        invariant(1 <= self.n_assets <= MAX_ASSETS, "asset count out of range")
        count = self.leaf_count
        invariant(count >= 2 and count & (count - 1) == 0, "leaf_count must be a power of two")
        invariant(self.height <= MAX_HEIGHT, "tree too tall")

    @property
    def height(self) -> int:
        return self.leaf_count.bit_length() - 1

    @property
    def record(self) -> int:
        return record_bytes(self.n_assets)

    def nodes_at(self, level: int) -> int:
        return self.leaf_count >> level

    def level_start(self, level: int) -> int:
        """Byte offset of a level from the start of the levels: 2N - 2^(h-l+1) records."""
        invariant(0 <= level <= self.height, "level out of range")
        nodes_before = 2 * self.leaf_count - 2 * (self.leaf_count >> level)
        return nodes_before * self.record

    @property
    def levels_bytes(self) -> int:
        return (2 * self.leaf_count - 1) * self.record


def leaf_count_for(real_leaves: int) -> int:
    """The next power of two, at least 2."""
    invariant(real_leaves >= 0, "negative leaf count")
    return max(2, 1 << max(0, real_leaves - 1).bit_length())


def enc(vector: Sequence[int]) -> bytes:
    """u128be of every amount (callers guarantee 0..2^128-1)."""
    return b"".join([amount.to_bytes(AMOUNT_BYTES, "big") for amount in vector])


def dec(row: bytes | memoryview, n_assets: int) -> list[int]:
    return [
        int.from_bytes(row[AMOUNT_BYTES * a : AMOUNT_BYTES * (a + 1)], "big")
        for a in range(n_assets)
    ]


class AuditKey:
    """HMAC-SHA256 under the audit secret, with the keyed states computed once.

    ``hmac.digest`` sets up the key on every call; copying prepared states is about three times
    faster, which matters for tens of millions of calls.
    """

    def __init__(self, secret: bytes) -> None:
        invariant(len(secret) == SECRET_BYTES, f"the audit secret must be {SECRET_BYTES} bytes")
        self.secret = secret
        block = secret.ljust(64, b"\x00")
        self._inner = _sha256(bytes(b ^ 0x36 for b in block))
        self._outer = _sha256(bytes(b ^ 0x5C for b in block))
        self._salt = self._prefixed(por_v1.SALT_DOMAIN)
        self._order = self._prefixed(ORDER_DOMAIN)
        self._pad = self._prefixed(PAD_DOMAIN)
        self._split = self._prefixed(SPLIT_DOMAIN)

    def _prefixed(self, domain: bytes) -> HASH:
        state = self._inner.copy()
        state.update(domain)
        return state

    def _mac(self, prefixed: HASH, message: bytes) -> bytes:
        inner = prefixed.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def mac(self, message: bytes) -> bytes:
        """Plain HMAC-SHA256(secret, message)."""
        return self._mac(self._inner, message)

    def user_salt(self, account_id: str) -> bytes:
        return self._mac(self._salt, account_id.encode("utf-8"))

    def user_tag(self, account_id: str) -> bytes:
        encoded = account_id.encode("utf-8")
        salt = self._mac(self._salt, encoded)
        return _sha256(por_v1.USER_DOMAIN + b"\x00" + salt + encoded).digest()

    def order_key(self, tag: bytes, piece: int) -> bytes:
        return self._mac(self._order, tag + piece.to_bytes(4, "big"))

    def pad_tag(self, number: int) -> bytes:
        return self._mac(self._pad, number.to_bytes(8, "big"))

    def split_block(self, tag: bytes, counter: int) -> bytes:
        return self._mac(self._split, tag + counter.to_bytes(4, "big"))

    def split_words(self, tag: bytes) -> Iterator[int]:
        """The user's split stream as 128-bit words: each HMAC block gives two (u128be)."""
        for counter in range(1 << 32):
            block = self.split_block(tag, counter)
            yield int.from_bytes(block[:AMOUNT_BYTES], "big")
            yield int.from_bytes(block[AMOUNT_BYTES:], "big")

    def split(self, tag: bytes, vector: Sequence[int], pieces: int) -> list[list[int]]:
        """Split a balance vector into ``pieces`` non-negative vectors that add up to it."""
        invariant(1 <= pieces <= MAX_PIECES, "pieces out of range")
        if pieces == 1:
            return [list(vector)]
        # Fast path: every word needed, at once; a rejection (below 2^-64 per word for
        # balances under 2^64) falls back to drawing from the stream one word at a time.
        needed = sum(1 for balance in vector if balance) * (pieces - 1)
        blocks = b"".join([self.split_block(tag, c) for c in range((needed + 1) // 2)])
        words = [int.from_bytes(blocks[16 * n : 16 * n + 16], "big") for n in range(needed)]
        try:
            return self._split_from(iter(words), vector, pieces, strict=True)
        except _Rejected:
            return self._split_from(self.split_words(tag), vector, pieces, strict=False)

    def _split_from(
        self, words: Iterator[int], vector: Sequence[int], pieces: int, *, strict: bool
    ) -> list[list[int]]:
        out = [[0] * len(vector) for _ in range(pieces)]
        for position, balance in enumerate(vector):
            if balance == 0:
                continue
            cuts = sorted([_draw(words, balance, strict) for _ in range(pieces - 1)])
            previous = 0
            for piece, cut in enumerate(cuts):
                out[piece][position] = cut - previous
                previous = cut
            out[pieces - 1][position] = balance - previous
        return out


class _Rejected(Exception):
    """A word was rejected: the fast path does not have the words that come next."""


def _draw(words: Iterator[int], bound: int, strict: bool = False) -> int:
    """Uniform in 0..bound by rejection: a word w is used as w mod (bound + 1) when it lies below
    the largest multiple of bound + 1 that fits in 128 bits (so all remainders are equally
    likely); a word at or above it is rejected and the next one taken."""
    modulus = bound + 1
    limit = _TWO_128 - _TWO_128 % modulus
    for _ in range(MAX_DRAW_ATTEMPTS):
        word = next(words)
        if word < limit:
            return word % modulus
        if strict:
            raise _Rejected
    raise AssertionError("split stream rejected 512 words in a row")  # pragma: no cover


# ------------------------------------------------------------------------------------------------
# Leaves: what the first pass computes per account and per padding leaf


@dataclass(frozen=True, slots=True)
class AccountLeaves:
    """Per account, in input order: ``tags`` (32 bytes each); per piece (account-major):
    ``keys`` (16-byte order-key prefixes) and ``vectors`` (enc of the piece's vector)."""

    tags: bytes
    keys: bytes
    vectors: bytes


def account_leaves(
    key: AuditKey, account_ids: Sequence[str], balances: U8, pieces: int
) -> AccountLeaves:
    """Tags, order keys and piece vectors for a chunk of accounts; ``balances`` holds one enc(B)
    row per account."""
    count, width = balances.shape
    n_assets = width // AMOUNT_BYTES
    invariant(count == len(account_ids), "one balance row per account")
    tags: list[bytes] = []
    keys: list[bytes] = []
    vectors: list[bytes] = []
    rows = balances.tobytes()
    for number, account_id in enumerate(account_ids):
        tag = key.user_tag(account_id)
        tags.append(tag)
        row = rows[number * width : (number + 1) * width]
        if pieces == 1:
            vectors.append(row)
        else:
            for vector in key.split(tag, dec(row, n_assets), pieces):
                vectors.append(enc(vector))
        for piece in range(pieces):
            keys.append(key.order_key(tag, piece)[:KEY_BYTES])
    return AccountLeaves(b"".join(tags), b"".join(keys), b"".join(vectors))


def padding_leaves(key: AuditKey, first: int, count: int) -> tuple[bytes, bytes]:
    """Tags and order-key prefixes of padding leaves ``first .. first + count - 1``."""
    tags = [key.pad_tag(number) for number in range(first, first + count)]
    keys = [key.order_key(tag, 0)[:KEY_BYTES] for tag in tags]
    return b"".join(tags), b"".join(keys)


def leaf_records(tags: U8, pieces: npt.NDArray[np.uint32], vectors: U8) -> bytes:
    """Level-0 records ``H(0x00 ‖ tag ‖ u32be(piece) ‖ enc(B)) ‖ enc(B)`` for aligned arrays:
    tags (m, 32), pieces (m,), vectors (m, 16·assets)."""
    count, width = vectors.shape
    invariant(tags.shape == (count, HASH_BYTES) and pieces.shape == (count,), "misaligned")
    length = 1 + HASH_BYTES + 4 + width
    messages = np.empty((count, length), dtype=np.uint8)
    messages[:, 0] = LEAF_PREFIX[0]
    messages[:, 1 : 1 + HASH_BYTES] = tags
    messages[:, 1 + HASH_BYTES : 5 + HASH_BYTES] = (
        pieces.astype(">u4").view(np.uint8).reshape(count, 4)
    )
    messages[:, 5 + HASH_BYTES :] = vectors
    blob = messages.tobytes()
    digests = b"".join(
        [
            _sha256(blob[start : start + length]).digest()
            for start in range(0, count * length, length)
        ]
    )
    out = np.empty((count, HASH_BYTES + width), dtype=np.uint8)
    out[:, :HASH_BYTES] = np.frombuffer(digests, dtype=np.uint8).reshape(count, HASH_BYTES)
    out[:, HASH_BYTES:] = vectors
    return out.tobytes()


# ------------------------------------------------------------------------------------------------
# Nodes


def parents(children: bytes, n_assets: int) -> bytes:
    """The records of the next level up from an even number of adjacent child records."""
    record = record_bytes(n_assets)
    pair = 2 * record
    invariant(len(children) % pair == 0 and len(children) > 0, "children must come in pairs")
    count = len(children) // pair
    digests = b"".join(
        [
            _sha256(NODE_PREFIX + children[start : start + pair]).digest()
            for start in range(0, count * pair, pair)
        ]
    )
    grid = np.frombuffer(children, dtype=np.uint8).reshape(2 * count, record)
    words = grid[:, HASH_BYTES:].copy().view(">u8").reshape(2 * count, n_assets, 2)
    high = words[:, :, 0].astype(np.uint64)
    low = words[:, :, 1].astype(np.uint64)
    sum_low = low[0::2] + low[1::2]
    carry = (sum_low < low[0::2]).astype(np.uint64)
    partial = high[0::2] + high[1::2]
    sum_high = partial + carry
    overflow = (partial < high[0::2]) | (sum_high < partial)
    invariant(not bool(overflow.any()), "a node's balance exceeds 2^128-1")
    amounts = np.empty((count, n_assets, 2), dtype=">u8")
    amounts[:, :, 0] = sum_high
    amounts[:, :, 1] = sum_low
    out = np.empty((count, record), dtype=np.uint8)
    out[:, :HASH_BYTES] = np.frombuffer(digests, dtype=np.uint8).reshape(count, HASH_BYTES)
    out[:, HASH_BYTES:] = amounts.view(np.uint8).reshape(count, record - HASH_BYTES)
    return out.tobytes()


def build_levels(leaves: bytes, n_assets: int, chunk_nodes: int = 1 << 15) -> list[bytes]:
    """Every level of the subtree over ``leaves`` (a power-of-two count of records), leaves
    first, up to its single root record. Large levels are hashed in chunks of ``chunk_nodes``
    parents so no intermediate is much larger than a level."""
    record = record_bytes(n_assets)
    count = len(leaves) // record
    invariant(count >= 1 and count & (count - 1) == 0, "subtree needs 2^j leaves")
    levels = [leaves]
    current = leaves
    while len(current) > record:
        step = 2 * record * chunk_nodes
        current = b"".join(
            [
                parents(current[start : start + step], n_assets)
                for start in range(0, len(current), step)
            ]
        )
        levels.append(current)
    return levels


def root_of(levels: Sequence[bytes], n_assets: int) -> tuple[bytes, list[int]]:
    top = levels[-1]
    invariant(len(top) == record_bytes(n_assets), "the last level is not a single node")
    return top[:HASH_BYTES], dec(top[HASH_BYTES:], n_assets)
