"""The strongroom-por-v1 Merkle sum tree (POR_FORMATS §1): pure functions, no I/O.

Every random choice is derived from one audit secret, so any engine (local processes, Spark)
builds the same tree, byte for byte, from the same snapshot and secret:

    user_salt  = HMAC(secret, "strongroom-por-v1/salt" ‖ account_id)        (POR_FORMATS)
    user_tag   = H("strongroom-por-v1/user" ‖ 0x00 ‖ user_salt ‖ account_id)  (POR_FORMATS)
    PRF_x      = AES-256 (one block) under the key HMAC(secret, "strongroom-por-v1/prf/" ‖ x),
                 x = split, order, pad
    nonce(tag) = tag[0:12] ^ tag[12:24] ^ (tag[24:32] ‖ 0x00000000)   (96 bits; every byte counts)
    split      = 128-bit words (u128be), word j = PRF_split(nonce(tag) ‖ u32be(j)), j = 0, 1, ..;
                 per asset (in order) with balance b > 0, k - 1 draws uniform in 0..b (a word w
                 below L = 2^128 - 2^128 mod (b+1) gives w mod (b+1), a word >= L is rejected),
                 sorted; the pieces are the gaps 0 → c1 → … → b
    order key  = PRF_order(nonce(tag) ‖ u32be(piece))  (16 bytes)
    padding    = leaves with tag = PRF_pad(u64be(p) ‖ u32be(0) ‖ u32be(0)) ‖ PRF_pad(u64be(p) ‖
                 u32be(0) ‖ u32be(1)), piece 0 and a zero vector, for p = 0 .. leaf_count -
                 real_leaves - 1

Only the salt and the tag are fixed by POR_FORMATS (a user checks them); the split, the order
and the padding never leave the prover, so any CSPRNG keyed by the audit secret will do. They
are AES-256 in counter mode (a 96-bit nonce, then a 32-bit block counter: the split stream is
AES-CTR's keystream with the nonce nonce(tag)), which AES-NI computes in about a nanosecond per
block where an HMAC-SHA256 costs two SHA-256 compressions: the derivations used to cost about as
many compressions as the tree itself. A PRF_x key never encrypts the same block twice for
different leaves unless two tags' nonces are equal (about n²/2^97 for n users: 10^-15 at 10 M);
even then the order keys would be equal, which the builders detect and refuse.

All leaves, padding included, are ordered by their order key (bytewise); padding is shuffled in
with the users' pieces rather than appended, so where the zero subtrees sit says nothing about how
many users there are. Level 0 holds the leaves, level ``height`` the root; a node's record in the
tree file is ``hash(32) ‖ enc(B)``, so a parent's message is ``0x01 ‖ left record ‖ right record``
and two adjacent children are one contiguous slice.

The hot loops (``account_leaves``, ``padding_leaves``, ``leaf_records``, ``parents``, and the
``*_into`` forms that write into memory the caller reuses) run in the C kernel
``strongroom.reserves._native`` (OpenSSL SHA-256, the GIL released) when it was built and
``STRONGROOM_POR_NATIVE`` is not ``0``; otherwise in Python (the ``*_py`` functions), which hash
with ``hashlib`` directly and add vectors with numpy. The Python functions are the reference: the
unit tests hold the kernel byte-identical to them, and them equal to the primitives of
``strongroom_verify.por_v1`` (which check every argument and would triple the build time).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from strongroom.errors import InvariantViolation, invariant
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

ORDER_DOMAIN = b"strongroom-por-v1/prf/order"
PAD_DOMAIN = b"strongroom-por-v1/prf/pad"
SPLIT_DOMAIN = b"strongroom-por-v1/prf/split"
NONCE_BYTES = 12
"""The PRFs' input block: a 96-bit nonce (``tag_nonce``), then u32be(counter)."""


def tag_nonce(tag: bytes) -> bytes:
    """A 32-byte tag folded to the PRFs' 96-bit nonce: tag[0:12] ^ tag[12:24] ^ (tag[24:32] ‖
    0x00000000)."""
    folded = (
        int.from_bytes(tag[:NONCE_BYTES], "big")
        ^ int.from_bytes(tag[NONCE_BYTES : 2 * NONCE_BYTES], "big")
        ^ int.from_bytes(tag[2 * NONCE_BYTES :] + bytes(4), "big")
    )
    return folded.to_bytes(NONCE_BYTES, "big")


LEAF_PREFIX = por_v1.LEAF_PREFIX
NODE_PREFIX = por_v1.NODE_PREFIX

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_sha256 = hashlib.sha256

NATIVE_ENV = "STRONGROOM_POR_NATIVE"
"""Set to ``0`` to force the pure-Python path (in this process and the workers it starts)."""


class NativeKernel(Protocol):
    """What ``strongroom.reserves._native`` provides (see _native.c and _native.pyi)."""

    def account_leaves_into(
        self,
        secret: bytes,
        ids: bytes,
        offsets: Any,
        balances: Any,
        n_assets: int,
        pieces: int,
        tags: Any,
        keys: Any,
        vectors: Any,
    ) -> None: ...

    def padding_leaves_into(
        self, secret: bytes, first: int, count: int, tags: Any, keys: Any
    ) -> None: ...

    def leaf_records(self, tags: Any, pieces: Any, vectors: Any, width: int) -> bytes: ...

    def leaf_records_by_id(
        self, leaf_ids: Any, tags: Any, pad_tags: Any, vectors: Any, pieces: int, width: int
    ) -> bytes: ...

    def leaf_records_by_id_into(
        self,
        leaf_ids: Any,
        tags: Any,
        pad_tags: Any,
        vectors: Any,
        pieces: int,
        width: int,
        out: Any,
    ) -> None: ...

    def leaf_records_of_into(
        self,
        secret: bytes,
        leaf_ids: Any,
        tags: Any,
        balances: Any,
        pieces: int,
        padding: int,
        width: int,
        out: Any,
    ) -> None: ...

    def parents(self, children: Any, n_assets: int) -> bytes | None: ...

    def parents_into(self, children: Any, n_assets: int, out: Any) -> bool: ...

    def sort_keys(self, keys: Any, stride: int, order: Any, part: int, parts: int) -> bool: ...

    def index_entries(self, accounts: Any, tags: Any, leaves: Any, pieces: int) -> bytes: ...

    def backends(self) -> list[str]: ...

    def backend(self, name: str | None = None, /) -> str: ...


def load_native() -> NativeKernel | None:
    """The C kernel, unless it was not built (no compiler or OpenSSL headers at install time) or
    ``STRONGROOM_POR_NATIVE=0``."""
    if os.environ.get(NATIVE_ENV, "").strip() == "0":
        return None
    try:
        from strongroom.reserves import _native
    except ImportError:
        return None
    return _native


kernel: NativeKernel | None = load_native()
"""The module-level switch: the dispatching functions below use the C kernel when this is set.
Tests set it to None to take the Python path in this process."""


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


@dataclass(frozen=True, slots=True)
class IdColumn:
    """Account ids as one column, as an Arrow string array holds them: the UTF-8 bytes back to
    back, id ``n`` at ``data[offsets[n]:offsets[n + 1]]`` (no Python object per account)."""

    data: bytes
    offsets: npt.NDArray[np.int64]

    @classmethod
    def of(cls, account_ids: Sequence[str]) -> IdColumn:
        encoded = [account_id.encode("utf-8") for account_id in account_ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(item) for item in encoded], out=offsets[1:])
        return cls(b"".join(encoded), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def strings(self) -> list[str]:
        bounds = self.offsets.tolist()
        return [
            self.data[bounds[n] : bounds[n + 1]].decode("utf-8") for n in range(len(bounds) - 1)
        ]


class AuditKey:
    """HMAC-SHA256 and the AES-256 PRFs under the audit secret, with the keyed states computed
    once.

    ``hmac.digest`` sets up the key on every call; copying prepared states is about three times
    faster, which matters for tens of millions of calls. The PRFs are AES-256-ECB over counter
    blocks (``cryptography``); an encryptor context is not shared between threads, so each thread
    keeps its own.
    """

    def __init__(self, secret: bytes) -> None:
        invariant(len(secret) == SECRET_BYTES, f"the audit secret must be {SECRET_BYTES} bytes")
        self.secret = secret
        block = secret.ljust(64, b"\x00")
        self._inner = _sha256(bytes(b ^ 0x36 for b in block))
        self._outer = _sha256(bytes(b ^ 0x5C for b in block))
        self._salt = self._prefixed(por_v1.SALT_DOMAIN)
        self._prf_keys = {
            domain: self.mac(domain) for domain in (ORDER_DOMAIN, PAD_DOMAIN, SPLIT_DOMAIN)
        }
        self._local = threading.local()

    def prf(self, domain: bytes, blocks: bytes) -> bytes:
        """PRF_domain of each 16-byte block of ``blocks`` (AES-256 under HMAC(secret, domain))."""
        contexts: dict[bytes, CipherContext] | None = getattr(self._local, "contexts", None)
        if contexts is None:
            contexts = self._local.contexts = {}
        context = contexts.get(domain)
        if context is None:
            # ECB over distinct counter blocks is CTR's keystream: the block PRF, no plaintext
            cipher = Cipher(algorithms.AES(self._prf_keys[domain]), modes.ECB())  # noqa: S305
            context = contexts[domain] = cipher.encryptor()
        return context.update(blocks)

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
        """The 16-byte order key of a leaf: PRF_order(nonce(tag) ‖ u32be(piece))."""
        return self.prf(ORDER_DOMAIN, tag_nonce(tag) + piece.to_bytes(4, "big"))

    def pad_tag(self, number: int) -> bytes:
        """The 32-byte tag of padding leaf ``number``: two PRF_pad blocks."""
        nonce = number.to_bytes(8, "big") + bytes(4)
        return self.prf(PAD_DOMAIN, nonce + bytes(4) + nonce + (1).to_bytes(4, "big"))

    def split_block(self, tag: bytes, counter: int) -> bytes:
        """Words 2·counter and 2·counter + 1 of the user's split stream (32 bytes)."""
        nonce = tag_nonce(tag)
        return self.prf(
            SPLIT_DOMAIN,
            nonce + (2 * counter).to_bytes(4, "big") + nonce + (2 * counter + 1).to_bytes(4, "big"),
        )

    def split_words(self, tag: bytes) -> Iterator[int]:
        """The user's split stream as 128-bit words: each block gives two (u128be)."""
        for counter in range(1 << 31):
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
        nonce = tag_nonce(tag)
        blocks = self.prf(
            SPLIT_DOMAIN, b"".join([nonce + c.to_bytes(4, "big") for c in range(needed)])
        )
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
    key: AuditKey, account_ids: Sequence[str] | IdColumn, balances: U8, pieces: int
) -> AccountLeaves:
    """Tags, order keys and piece vectors for a chunk of accounts; ``balances`` holds one enc(B)
    row per account."""
    count, width = balances.shape
    invariant(count == len(account_ids), "one balance row per account")
    invariant(1 <= pieces <= MAX_PIECES, "pieces out of range")
    if kernel is None:
        if isinstance(account_ids, IdColumn):
            account_ids = account_ids.strings()
        return account_leaves_py(key, account_ids, balances, pieces)
    tags = np.empty((count, HASH_BYTES), dtype=np.uint8)
    keys = np.empty((count * pieces, KEY_BYTES), dtype=np.uint8)
    vectors = np.empty((count * pieces, width), dtype=np.uint8)
    account_leaves_into(key, account_ids, balances, pieces, tags, keys, vectors)
    return AccountLeaves(tags.tobytes(), keys.tobytes(), vectors.tobytes())


def account_leaves_into(
    key: AuditKey,
    account_ids: Sequence[str] | IdColumn,
    balances: U8,
    pieces: int,
    tags: U8,
    keys: U8,
    vectors: U8 | None,
) -> None:
    """``account_leaves`` written into C-contiguous arrays of the right shapes: ``tags`` (count,
    32), ``keys`` (count · pieces, 16), ``vectors`` (count · pieces, 16 · assets), or None when
    the vectors are not wanted (one piece: they are the balances; more: ``leaf_records_of_into``
    splits them again)."""
    count, width = balances.shape
    invariant(count == len(account_ids), "one balance row per account")
    invariant(1 <= pieces <= MAX_PIECES, "pieces out of range")
    invariant(
        tags.shape == (count, HASH_BYTES)
        and keys.shape == (count * pieces, KEY_BYTES)
        and (vectors is None or vectors.shape == (count * pieces, width)),
        "output arrays of the wrong shape",
    )
    invariant(
        all(array.flags.c_contiguous for array in (tags, keys, vectors) if array is not None),
        "output arrays must be C-contiguous",
    )
    if kernel is None:
        if isinstance(account_ids, IdColumn):
            account_ids = account_ids.strings()
        result = account_leaves_py(key, account_ids, balances, pieces)
        tags[:] = np.frombuffer(result.tags, np.uint8).reshape(tags.shape)
        keys[:] = np.frombuffer(result.keys, np.uint8).reshape(keys.shape)
        if vectors is not None:
            vectors[:] = np.frombuffer(result.vectors, np.uint8).reshape(vectors.shape)
        return
    column = account_ids if isinstance(account_ids, IdColumn) else IdColumn.of(account_ids)
    kernel.account_leaves_into(
        key.secret,
        column.data,
        np.ascontiguousarray(column.offsets, dtype=np.int64),
        np.ascontiguousarray(balances, dtype=np.uint8),
        width // AMOUNT_BYTES,
        pieces,
        tags,
        keys,
        vectors,
    )


def account_leaves_py(
    key: AuditKey, account_ids: Sequence[str], balances: U8, pieces: int
) -> AccountLeaves:
    """``account_leaves`` in Python: the reference for the C kernel."""
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
    invariant(first >= 0 and count >= 0, "padding range out of range")
    if kernel is None:
        return padding_leaves_py(key, first, count)
    tags = np.empty((count, HASH_BYTES), dtype=np.uint8)
    keys = np.empty((count, KEY_BYTES), dtype=np.uint8)
    padding_leaves_into(key, first, tags, keys)
    return tags.tobytes(), keys.tobytes()


def padding_leaves_into(key: AuditKey, first: int, tags: U8, keys: U8) -> None:
    """``padding_leaves`` of ``len(tags)`` leaves written into C-contiguous arrays: ``tags``
    (count, 32), ``keys`` (count, 16)."""
    count = len(tags)
    invariant(first >= 0, "padding range out of range")
    invariant(
        tags.shape == (count, HASH_BYTES) and keys.shape == (count, KEY_BYTES),
        "output arrays of the wrong shape",
    )
    invariant(
        tags.flags.c_contiguous and keys.flags.c_contiguous, "output arrays must be C-contiguous"
    )
    if kernel is None:
        tag_bytes, key_bytes = padding_leaves_py(key, first, count)
        tags[:] = np.frombuffer(tag_bytes, np.uint8).reshape(tags.shape)
        keys[:] = np.frombuffer(key_bytes, np.uint8).reshape(keys.shape)
        return
    kernel.padding_leaves_into(key.secret, first, count, tags, keys)


def padding_leaves_py(key: AuditKey, first: int, count: int) -> tuple[bytes, bytes]:
    """``padding_leaves`` in Python: the reference for the C kernel."""
    tags = [key.pad_tag(number) for number in range(first, first + count)]
    keys = [key.order_key(tag, 0)[:KEY_BYTES] for tag in tags]
    return b"".join(tags), b"".join(keys)


def leaf_records(tags: U8, pieces: npt.NDArray[np.uint32], vectors: U8) -> bytes:
    """Level-0 records ``H(0x00 ‖ tag ‖ u32be(piece) ‖ enc(B)) ‖ enc(B)`` for aligned arrays:
    tags (m, 32), pieces (m,), vectors (m, 16·assets)."""
    count, width = vectors.shape
    invariant(tags.shape == (count, HASH_BYTES) and pieces.shape == (count,), "misaligned")
    if kernel is None:
        return leaf_records_py(tags, pieces, vectors)
    return kernel.leaf_records(
        np.ascontiguousarray(tags, dtype=np.uint8),
        np.ascontiguousarray(pieces, dtype=np.uint32),
        np.ascontiguousarray(vectors, dtype=np.uint8),
        width,
    )


def leaf_records_py(tags: U8, pieces: npt.NDArray[np.uint32], vectors: U8) -> bytes:
    """``leaf_records`` in Python: the reference for the C kernel."""
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


def gather_leaves(
    leaf_ids: I64, tags: U8, pad_tags: U8, vectors: U8, pieces: int
) -> tuple[U8, npt.NDArray[np.uint32], U8]:
    """The (tag, piece, vector) of each leaf id, in the given order: a leaf id below ``real`` =
    len(vectors) is piece ``id % pieces`` of account ``id // pieces``; above, padding leaf
    ``id - real`` (its tag from ``pad_tags``, piece 0, a zero vector)."""
    real = len(vectors)
    count = len(leaf_ids)
    is_real = leaf_ids < real
    real_ids = leaf_ids[is_real]
    block_tags = np.empty((count, HASH_BYTES), dtype=np.uint8)
    block_tags[is_real] = tags[real_ids // pieces]
    block_tags[~is_real] = pad_tags[leaf_ids[~is_real] - real]
    block_pieces = np.zeros(count, dtype=np.uint32)
    block_pieces[is_real] = real_ids % pieces
    block_vectors = np.zeros((count, vectors.shape[1]), dtype=np.uint8)
    block_vectors[is_real] = vectors[real_ids]
    return block_tags, block_pieces, block_vectors


def leaf_records_by_id(leaf_ids: I64, tags: U8, pad_tags: U8, vectors: U8, pieces: int) -> bytes:
    """``leaf_records`` of the leaves ``gather_leaves`` picks, in one pass (the C kernel gathers
    as it hashes, with no intermediate arrays)."""
    if kernel is None:
        return leaf_records_by_id_py(leaf_ids, tags, pad_tags, vectors, pieces)
    return kernel.leaf_records_by_id(
        np.ascontiguousarray(leaf_ids, dtype=np.int64),
        np.ascontiguousarray(tags, dtype=np.uint8),
        np.ascontiguousarray(pad_tags, dtype=np.uint8),
        np.ascontiguousarray(vectors, dtype=np.uint8),
        pieces,
        vectors.shape[1],
    )


def leaf_records_by_id_into(
    leaf_ids: I64, tags: U8, pad_tags: U8, vectors: U8, pieces: int, out: memoryview
) -> None:
    """``leaf_records_by_id`` written into ``out`` (a writable buffer of exactly the records'
    size, which the caller reuses from block to block)."""
    width = vectors.shape[1]
    invariant(len(out) == len(leaf_ids) * (HASH_BYTES + width), "out is not the records' size")
    if kernel is None:
        out[:] = leaf_records_by_id_py(leaf_ids, tags, pad_tags, vectors, pieces)
        return
    kernel.leaf_records_by_id_into(
        np.ascontiguousarray(leaf_ids, dtype=np.int64),
        np.ascontiguousarray(tags, dtype=np.uint8),
        np.ascontiguousarray(pad_tags, dtype=np.uint8),
        np.ascontiguousarray(vectors, dtype=np.uint8),
        pieces,
        width,
        out,
    )


def leaf_records_of_into(
    key: AuditKey,
    leaf_ids: I64,
    tags: U8,
    balances: U8,
    pieces: int,
    padding: int,
    out: memoryview,
) -> None:
    """``leaf_records_by_id_into`` from the accounts' tags and balance rows alone: each piece's
    vector is split again from the balances (the same split as ``account_leaves``) and each
    padding tag computed again (``pad_tag``), so a build keeps neither in memory. Leaf ids
    below accounts · pieces are pieces, the ``padding`` ids above are padding leaves."""
    width = balances.shape[1]
    invariant(len(tags) == len(balances), "one tag per balance row")
    invariant(len(out) == len(leaf_ids) * (HASH_BYTES + width), "out is not the records' size")
    if kernel is None:
        out[:] = leaf_records_of_py(key, leaf_ids, tags, balances, pieces, padding)
        return
    kernel.leaf_records_of_into(
        key.secret,
        np.ascontiguousarray(leaf_ids, dtype=np.int64),
        np.ascontiguousarray(tags, dtype=np.uint8),
        np.ascontiguousarray(balances, dtype=np.uint8),
        pieces,
        padding,
        width,
        out,
    )


def leaf_records_of_py(
    key: AuditKey, leaf_ids: I64, tags: U8, balances: U8, pieces: int, padding: int
) -> bytes:
    """``leaf_records_of_into`` in Python: the reference for the C kernel."""
    count, (accounts, width) = len(leaf_ids), balances.shape
    real = accounts * pieces
    invariant(bool(np.all((leaf_ids >= 0) & (leaf_ids < real + padding))), "leaf id out of range")
    leaf_tags = np.empty((count, HASH_BYTES), dtype=np.uint8)
    leaf_pieces = np.zeros(count, dtype=np.uint32)
    vectors = np.zeros((count, width), dtype=np.uint8)
    for position, leaf in enumerate(leaf_ids.tolist()):
        if leaf >= real:
            leaf_tags[position] = np.frombuffer(key.pad_tag(leaf - real), np.uint8)
            continue
        account, piece = divmod(leaf, pieces)
        tag = tags[account].tobytes()
        row = balances[account].tobytes()
        if pieces > 1:
            row = enc(key.split(tag, dec(row, width // AMOUNT_BYTES), pieces)[piece])
        leaf_tags[position] = tags[account]
        leaf_pieces[position] = piece
        vectors[position] = np.frombuffer(row, np.uint8)
    return leaf_records_py(leaf_tags, leaf_pieces, vectors)


def leaf_records_by_id_py(leaf_ids: I64, tags: U8, pad_tags: U8, vectors: U8, pieces: int) -> bytes:
    """``leaf_records_by_id`` in Python: the reference for the C kernel."""
    return leaf_records_py(*gather_leaves(leaf_ids, tags, pad_tags, vectors, pieces))


# ------------------------------------------------------------------------------------------------
# Ordering


def key_order(rows: U8, threads: int = 1) -> tuple[I64, bool]:
    """Positions → row numbers of ``rows`` sorted bytewise on their first 16 bytes, and whether
    two rows share those bytes (then the order is meaningless). The C kernel sorts with
    ``threads`` threads."""
    count, width = rows.shape
    invariant(width >= KEY_BYTES, "keys are 16 bytes")
    if kernel is None:
        return key_order_py(rows)
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    order = np.empty(count, dtype=np.int64)
    parts = max(1, min(threads, 64))
    if parts == 1 or count < 1 << 16:
        return order, kernel.sort_keys(rows, width, order, 0, 1)
    native = kernel
    with ThreadPoolExecutor(parts, thread_name_prefix="por-sort") as pool:
        duplicates = list(
            pool.map(lambda part: native.sort_keys(rows, width, order, part, parts), range(parts))
        )
    return order, any(duplicates)


def key_order_py(rows: U8) -> tuple[I64, bool]:
    """``key_order`` with numpy: the reference for the C kernel."""
    count = len(rows)
    high = np.ascontiguousarray(rows[:, :8]).view(">u8").reshape(count).astype(np.uint64)
    low = np.ascontiguousarray(rows[:, 8:KEY_BYTES]).view(">u8").reshape(count).astype(np.uint64)
    order = np.argsort(high, kind="stable")
    sorted_high = high[order]
    equal = sorted_high[1:] == sorted_high[:-1]
    if equal.any():  # runs of equal first words are ordered by the second word
        same_as_next = np.r_[equal, False]
        same_as_previous = np.r_[False, equal]
        starts = np.flatnonzero(same_as_next & ~same_as_previous)
        ends = np.flatnonzero(same_as_previous & ~same_as_next) + 1
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            group = order[start:end]
            order[start:end] = group[np.argsort(low[group], kind="stable")]
    sorted_low = low[order]
    same = (sorted_high[1:] == sorted_high[:-1]) & (sorted_low[1:] == sorted_low[:-1])
    return order.astype(np.int64), bool(same.any())


def index_entries(accounts: I64, tags: U8, leaves: I64) -> bytes:
    """index.bin entries (treefile) of the given accounts, in that order: the first 16 bytes of
    the account's tag, then u64be of the leaf index of each piece (``leaves``: one row of
    ``pieces`` leaf indices per account)."""
    total, pieces = leaves.shape
    invariant(tags.shape == (total, HASH_BYTES), "one tag per account")
    if kernel is None:
        return index_entries_py(accounts, tags, leaves)
    return kernel.index_entries(
        np.ascontiguousarray(accounts, dtype=np.int64),
        np.ascontiguousarray(tags, dtype=np.uint8),
        np.ascontiguousarray(leaves, dtype=np.int64),
        pieces,
    )


def index_entries_py(accounts: I64, tags: U8, leaves: I64) -> bytes:
    """``index_entries`` with numpy: the reference for the C kernel."""
    pieces = leaves.shape[1]
    entries = np.empty((len(accounts), KEY_BYTES + 8 * pieces), dtype=np.uint8)
    entries[:, :KEY_BYTES] = tags[accounts, :KEY_BYTES]
    entries[:, KEY_BYTES:] = (
        leaves[accounts].astype(">u8").view(np.uint8).reshape(len(accounts), 8 * pieces)
    )
    return entries.tobytes()


# ------------------------------------------------------------------------------------------------
# Nodes


def parents(children: bytes, n_assets: int) -> bytes:
    """The records of the next level up from an even number of adjacent child records."""
    pair = 2 * record_bytes(n_assets)
    invariant(len(children) % pair == 0 and len(children) > 0, "children must come in pairs")
    if kernel is None:
        return parents_py(children, n_assets)
    out = kernel.parents(children, n_assets)
    if out is None:
        raise InvariantViolation("a node's balance exceeds 2^128-1")
    return out


def parents_into(children: memoryview, n_assets: int, out: memoryview) -> None:
    """``parents`` written into ``out`` (writable, exactly the parents' size, not overlapping
    ``children``)."""
    pair = 2 * record_bytes(n_assets)
    invariant(len(children) % pair == 0 and len(children) > 0, "children must come in pairs")
    invariant(len(out) * 2 == len(children), "out is not the parents' size")
    if kernel is None:
        out[:] = parents_py(bytes(children), n_assets)
        return
    if not kernel.parents_into(children, n_assets, out):
        raise InvariantViolation("a node's balance exceeds 2^128-1")


def parents_py(children: bytes, n_assets: int) -> bytes:
    """``parents`` in Python (numpy): the reference for the C kernel."""
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
    first, up to its single root record. In Python, large levels are hashed in chunks of
    ``chunk_nodes`` parents so that numpy's intermediates stay small; the C kernel takes a level
    at once."""
    record = record_bytes(n_assets)
    count = len(leaves) // record
    invariant(count >= 1 and count & (count - 1) == 0, "subtree needs 2^j leaves")
    levels = [leaves]
    current = leaves
    while len(current) > record:
        if kernel is not None:
            current = parents(current, n_assets)
            levels.append(current)
            continue
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
