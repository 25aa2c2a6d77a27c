"""The tree's pure parts: the fast paths equal the verifier's primitives, the split is exact,
parents add vectors exactly and refuse to overflow."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import InvariantViolation
from strongroom.reserves import merkle
from strongroom.reserves.merkle import AuditKey, Shape, leaf_count_for
from strongroom_verify import por_v1
from tests.unit.reserves.helpers import SECRET

U128 = st.integers(min_value=0, max_value=por_v1.U128_MAX)
ACCOUNT_IDS = st.text(min_size=1, max_size=16).filter(
    lambda s: 1 <= len(s.encode("utf-8", "surrogatepass")) <= 64 and s.isprintable()
)


def _ctr(domain: bytes, nonce: bytes, blocks: int) -> bytes:
    """AES-256-CTR's keystream under HMAC(SECRET, domain) from nonce ‖ u32be(0): computed here
    with the CTR mode, independently of merkle's counter blocks through ECB."""
    aes_key = hmac.digest(SECRET, domain, "sha256")
    encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(nonce + bytes(4))).encryptor()
    return encryptor.update(bytes(16 * blocks))


def test_audit_key_is_hmac_sha256_and_aes_ctr() -> None:
    key = AuditKey(SECRET)
    for message in (b"", b"x", b"a" * 200):
        assert key.mac(message) == hmac.new(SECRET, message, hashlib.sha256).digest()
    tag = bytes(range(32))
    nonce = bytes(
        a ^ b ^ c for a, b, c in zip(tag[:12], tag[12:24], tag[24:] + bytes(4), strict=True)
    )
    assert merkle.tag_nonce(tag) == nonce
    order = _ctr(b"strongroom-por-v1/prf/order", nonce, 4)
    assert key.order_key(tag, 3) == order[48:64]
    assert key.order_key(tag, 0) == order[:16]
    assert key.pad_tag(9) == _ctr(
        b"strongroom-por-v1/prf/pad", (9).to_bytes(8, "big") + bytes(4), 2
    )
    stream = _ctr(b"strongroom-por-v1/prf/split", nonce, 6)
    assert key.split_block(tag, 0) + key.split_block(tag, 1) + key.split_block(tag, 2) == stream
    words = key.split_words(tag)
    assert [next(words) for _ in range(6)] == [
        int.from_bytes(stream[16 * n : 16 * n + 16], "big") for n in range(6)
    ]


def test_every_byte_of_the_tag_moves_the_derivations() -> None:
    key = AuditKey(SECRET)
    tag = bytes(32)
    for position in range(32):
        other = bytearray(tag)
        other[position] = 1
        assert key.order_key(bytes(other), 0) != key.order_key(tag, 0)
        assert key.split_block(bytes(other), 0) != key.split_block(tag, 0)


def test_secret_must_be_32_bytes() -> None:
    with pytest.raises(InvariantViolation):
        AuditKey(b"short")


@given(ACCOUNT_IDS)
def test_salt_and_tag_equal_the_verifiers(account_id: str) -> None:
    key = AuditKey(SECRET)
    salt = por_v1.derive_user_salt(SECRET, account_id)
    assert key.user_salt(account_id) == salt
    assert key.user_tag(account_id) == por_v1.user_tag(salt, account_id)


@given(
    st.lists(
        st.tuples(
            st.binary(min_size=32, max_size=32),
            st.integers(0, 15),
            st.lists(U128, min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_leaf_records_equal_the_verifiers_leaf_hash(
    leaves: list[tuple[bytes, int, list[int]]],
) -> None:
    tags = np.frombuffer(b"".join(t for t, _, _ in leaves), np.uint8).reshape(len(leaves), 32)
    pieces = np.array([p for _, p, _ in leaves], dtype=np.uint32)
    vectors = np.frombuffer(b"".join(merkle.enc(v) for _, _, v in leaves), np.uint8)
    records = merkle.leaf_records(tags, pieces, vectors.reshape(len(leaves), 48))
    for number, (tag, piece, vector) in enumerate(leaves):
        record = records[number * 80 : (number + 1) * 80]
        assert record[:32] == por_v1.leaf_hash(tag, piece, vector)
        assert record[32:] == por_v1.enc(vector)


@given(
    st.lists(
        st.tuples(
            st.binary(min_size=32, max_size=32),
            st.lists(st.integers(0, por_v1.U128_MAX // 2), min_size=2, max_size=2),
        ),
        min_size=2,
        max_size=16,
    ).filter(lambda nodes: len(nodes) % 2 == 0)
)
def test_parents_equal_the_verifiers_node_hash(nodes: list[tuple[bytes, list[int]]]) -> None:
    children = b"".join(h + merkle.enc(v) for h, v in nodes)
    out = merkle.parents(children, 2)
    for number in range(len(nodes) // 2):
        (h_left, b_left), (h_right, b_right) = nodes[2 * number], nodes[2 * number + 1]
        record = out[number * 64 : (number + 1) * 64]
        assert record[:32] == por_v1.node_hash(h_left, b_left, h_right, b_right)
        assert merkle.dec(record[32:], 2) == [a + b for a, b in zip(b_left, b_right, strict=True)]


def test_parents_carry_between_64_bit_words_and_refuse_overflow() -> None:
    low_max = (1 << 64) - 1
    children = bytes(32) + merkle.enc([low_max]) + bytes(32) + merkle.enc([1])
    assert merkle.dec(merkle.parents(children, 1)[32:], 1) == [1 << 64]
    too_big = bytes(32) + merkle.enc([por_v1.U128_MAX]) + bytes(32) + merkle.enc([1])
    with pytest.raises(InvariantViolation):
        merkle.parents(too_big, 1)


@settings(max_examples=200)
@given(
    st.lists(U128, min_size=1, max_size=4), st.integers(1, 16), st.binary(min_size=32, max_size=32)
)
def test_split_is_exact_non_negative_and_deterministic(
    vector: list[int], pieces: int, tag: bytes
) -> None:
    key = AuditKey(SECRET)
    split = key.split(tag, vector, pieces)
    assert len(split) == pieces
    assert all(amount >= 0 for piece in split for amount in piece)
    assert [sum(column) for column in zip(*split, strict=True)] == vector
    assert split == AuditKey(SECRET).split(tag, vector, pieces)


def test_split_depends_on_the_secret_and_the_user() -> None:
    vector = [10**20, 10**9]
    first = AuditKey(SECRET).split(bytes(32), vector, 2)
    assert first != AuditKey(bytes(32)).split(bytes(32), vector, 2)
    assert first != AuditKey(SECRET).split(b"\x01" * 32, vector, 2)


def test_split_draws_are_roughly_uniform() -> None:
    key = AuditKey(SECRET)
    draws = [key.split(n.to_bytes(32, "big"), [3], 2)[0][0] for n in range(4000)]
    counts = [draws.count(value) for value in range(4)]
    assert all(850 < count < 1150 for count in counts), counts


@pytest.mark.parametrize(
    ("real", "count"), [(0, 2), (1, 2), (2, 2), (3, 4), (4, 4), (5, 8), (1025, 2048)]
)
def test_leaf_count_is_the_next_power_of_two_at_least_two(real: int, count: int) -> None:
    assert leaf_count_for(real) == count


def test_level_offsets() -> None:
    shape = Shape(n_assets=2, leaf_count=8)
    assert shape.record == 64
    assert [shape.level_start(level) // 64 for level in range(4)] == [0, 8, 12, 14]
    assert shape.levels_bytes == 15 * 64
    with pytest.raises(InvariantViolation):
        Shape(n_assets=2, leaf_count=6)


def test_build_levels_reaches_one_root() -> None:
    leaves = b"".join(bytes([n]) * 32 + merkle.enc([n]) for n in range(8))
    levels = merkle.build_levels(leaves, 1, chunk_nodes=1)
    assert [len(level) // 48 for level in levels] == [8, 4, 2, 1]
    root, totals = merkle.root_of(levels, 1)
    assert totals == [sum(range(8))]
    assert levels[1] == merkle.parents(leaves, 1)
    assert len(root) == 32


@settings(max_examples=200)
@given(
    st.lists(st.one_of(U128, st.integers(2**127, 2**128 - 1)), min_size=1, max_size=4),
    st.integers(2, 5),
    st.binary(min_size=32, max_size=32),
)
def test_split_fast_path_equals_drawing_word_by_word(
    vector: list[int], pieces: int, tag: bytes
) -> None:
    key = AuditKey(SECRET)
    slow = key._split_from(key.split_words(tag), vector, pieces, strict=False)
    assert key.split(tag, vector, pieces) == slow


def test_huge_balances_do_reject_words_and_stay_exact() -> None:
    key = AuditKey(SECRET)
    bound = 2**127  # about half of all words are rejected
    tags = [n.to_bytes(32, "big") for n in range(64)]
    rejected = 0
    for tag in tags:
        words = key.split_words(tag)
        limit = 2**128 - 2**128 % (bound + 1)
        rejected += next(words) >= limit
        split = key.split(tag, [bound], 2)
        assert split[0][0] + split[1][0] == bound
    assert rejected > 10
