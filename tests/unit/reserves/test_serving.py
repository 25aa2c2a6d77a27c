"""Serving proofs from the files: the index finds every account however its keys are spread,
and the fast proof path gives the bytes of the plain one (read node by node, formatted with
the verifier's own functions), whatever the caching of the top levels."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import InvariantViolation
from strongroom.reserves import proofs
from strongroom.reserves.merkle import HASH_BYTES, AuditKey, dec
from strongroom.reserves.proofs import NotInAudit, ProofServer, amount_text
from strongroom.reserves.treefile import (
    INDEX_KEY_BYTES,
    IndexFile,
    TreeFile,
    encode_index_header,
)
from strongroom_verify import por_v1
from tests.unit.reserves.helpers import SECRET, build_audit, random_balances


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 38))
def test_amount_text_is_the_verifiers_format(amount: int, scale: int) -> None:
    assert amount_text(amount, scale) == por_v1.format_amount(amount, scale)


# ------------------------------------------------------------------------------------------------
# The index


def _write_index(path: Path, keys: list[bytes], pieces: int = 2) -> dict[bytes, list[int]]:
    """An index.bin of these 16-byte keys, each with made-up leaf numbers."""
    entries = {key: [7 * n + p for p in range(pieces)] for n, key in enumerate(sorted(keys))}
    body = b"".join(
        key + b"".join(leaf.to_bytes(8, "big") for leaf in leaves)
        for key, leaves in entries.items()
    )
    path.write_bytes(encode_index_header(pieces, len(entries)) + body)
    return entries


def _spreads(rng: random.Random) -> dict[str, list[bytes]]:
    uniform = [rng.randbytes(16) for _ in range(3000)]
    clustered = [b"\x42" * 8 + rng.randbytes(8) for _ in range(2000)]  # one 8-byte prefix
    skewed = [bytes(7) + rng.randbytes(9) for _ in range(1500)] + [
        b"\xff" * 6 + rng.randbytes(10) for _ in range(1500)
    ]
    extremes = [bytes(16), b"\xff" * 16, bytes(15) + b"\x01", b"\xff" * 15 + b"\xfe"]
    return {
        "uniform": uniform,
        "clustered": clustered,
        "skewed": skewed,
        "extremes": extremes,
        "one": [rng.randbytes(16)],
        "none": [],
    }


@pytest.mark.parametrize("spread", ["uniform", "clustered", "skewed", "extremes", "one", "none"])
def test_the_index_finds_every_key_and_only_those(tmp_path: Path, spread: str) -> None:
    rng = random.Random(spread)
    keys = _spreads(rng)[spread]
    entries = _write_index(tmp_path / "index.bin", keys)
    index = IndexFile(tmp_path / "index.bin")
    for key, leaves in entries.items():
        assert index.lookup(key + rng.randbytes(HASH_BYTES - INDEX_KEY_BYTES)) == leaves
    absent = [rng.randbytes(16) for _ in range(300)] + [bytes(16), b"\xff" * 16]
    absent += [key[:-1] + bytes([key[-1] ^ 1]) for key in list(entries)[:300]]
    for key in absent:
        if key not in entries:
            assert index.lookup(key + bytes(HASH_BYTES - INDEX_KEY_BYTES)) is None
    index.close()


def test_an_unsorted_index_still_answers_without_looping(tmp_path: Path) -> None:
    """A corrupted (unsorted) index may miss keys, but every lookup ends and never invents one."""
    rng = random.Random(3)
    keys = [rng.randbytes(16) for _ in range(500)]
    path = tmp_path / "index.bin"
    body = b"".join(key + (n).to_bytes(8, "big") for n, key in enumerate(keys))  # not sorted
    path.write_bytes(encode_index_header(1, len(keys)) + body)
    index = IndexFile(path)
    for n, key in enumerate(keys):
        assert index.lookup(key + bytes(16)) in (None, [n])
    index.close()


# ------------------------------------------------------------------------------------------------
# Proofs


def _plain_proof(directory: Path, account_id: str) -> dict[str, Any]:
    """The proof of POR_FORMATS §1 the slow, obvious way: node by node, with por_v1's functions."""
    root = json.loads((directory / "root.json").read_text())
    assets = [por_v1.Asset(a["code"], a["scale"]) for a in root["assets"]]
    tree = TreeFile(directory / "tree.bin")
    index = IndexFile(directory / "index.bin")
    salt = por_v1.derive_user_salt(SECRET, account_id)
    leaves_found = index.lookup(por_v1.user_tag(salt, account_id))
    assert leaves_found is not None

    def text(record: bytes) -> dict[str, str]:
        amounts = dec(record[HASH_BYTES:], len(assets))
        return {
            a.code: por_v1.format_amount(v, a.scale) for a, v in zip(assets, amounts, strict=True)
        }

    leaves = []
    balances = [0] * len(assets)
    for piece, leaf in enumerate(leaves_found):
        record = tree.node(0, leaf)
        balances = [
            b + v for b, v in zip(balances, dec(record[HASH_BYTES:], len(assets)), strict=True)
        ]
        path = [
            {"hash": sibling[:HASH_BYTES].hex(), "balances": text(sibling)}
            for sibling in (
                tree.node(level, (leaf >> level) ^ 1) for level in range(tree.shape.height)
            )
        ]
        leaves.append({"index": leaf, "piece": piece, "balances": text(record), "path": path})
    tree.close()
    index.close()
    return {
        "format": "strongroom-por-v1",
        "audit_id": root["audit_id"],
        "assets": root["assets"],
        "root": root["root"],
        "totals": root["totals"],
        "leaf_count": root["leaf_count"],
        "account_id": account_id,
        "user_salt": salt.hex(),
        "balances": {
            a.code: por_v1.format_amount(v, a.scale) for a, v in zip(assets, balances, strict=True)
        },
        "leaves": leaves,
    }


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("serving") / "audit"
    return build_audit(directory, random_balances(700, seed=11), pieces=3)  # 2048 leaves


@pytest.mark.parametrize("cached_levels", [0, 4, 11, 40])
def test_proofs_are_the_plain_proofs_byte_for_byte(
    audit_dir: Path, monkeypatch: pytest.MonkeyPatch, cached_levels: int
) -> None:
    monkeypatch.setattr(proofs, "CACHED_LEVELS", cached_levels)
    server = ProofServer(audit_dir)
    for round_ in range(2):  # the second round is served from a warm cache
        for number in range(0, 700, 7 if round_ else 13):
            account_id = f"user-{number:06d}"
            served = server.proof(account_id)
            assert json.dumps(served) == json.dumps(_plain_proof(audit_dir, account_id))
    server.close()


def test_a_changed_proof_does_not_change_the_next_one(audit_dir: Path) -> None:
    server = ProofServer(audit_dir)
    first = server.proof("user-000001")
    expected = json.dumps(first)
    first["leaves"][0]["path"][-1]["balances"]["BTC"] = "999.00000000"  # a cached top node
    first["totals"]["BTC"] = "0.00000000"
    first["assets"][0]["scale"] = 0
    assert json.dumps(server.proof("user-000001")) == expected
    server.close()


@pytest.mark.parametrize("account_id", ["", "x" * 65, "\ud800", "user-9999999", "é" * 33])
def test_ids_that_cannot_be_in_the_audit(audit_dir: Path, account_id: str) -> None:
    server = ProofServer(audit_dir)
    assert server.leaves_of(account_id) is None
    with pytest.raises(NotInAudit):
        server.proof(account_id)
    server.close()


def test_siblings_are_the_path_nodes(audit_dir: Path) -> None:
    tree = TreeFile(audit_dir / "tree.bin")
    height = tree.shape.height
    for leaf in (0, 1, 777, tree.shape.leaf_count - 1):
        expected = [tree.node(level, (leaf >> level) ^ 1) for level in range(height)]
        assert tree.siblings(leaf, height) == expected
        assert tree.siblings(leaf, 3) == expected[:3]
    with pytest.raises(InvariantViolation):
        tree.siblings(tree.shape.leaf_count, height)
    with pytest.raises(InvariantViolation):
        tree.node(height + 1, 0)
    tree.close()


def test_a_leaf_whose_hash_is_not_the_accounts_is_not_served(
    audit_dir: Path, tmp_path: Path
) -> None:
    """The index holds 16 bytes of the tag, so the server confirms each leaf's hash: an index
    entry pointing at another account's leaves (a corrupted or tampered index) serves nothing."""
    copy = tmp_path / "audit"
    shutil.copytree(audit_dir, copy)
    key = AuditKey(SECRET)
    index = IndexFile(copy / "index.bin")
    victim, other = key.user_tag("user-000003"), key.user_tag("user-000004")
    other_leaves = index.lookup(other)
    assert index.lookup(victim) is not None and other_leaves is not None
    data = bytearray((copy / "index.bin").read_bytes())
    index.close()
    at = data.index(victim[:INDEX_KEY_BYTES]) + INDEX_KEY_BYTES
    data[at : at + 24] = b"".join(leaf.to_bytes(8, "big") for leaf in other_leaves)
    (copy / "index.bin").write_bytes(bytes(data))
    server = ProofServer(copy)
    assert server.leaves_of("user-000003") is None
    with pytest.raises(NotInAudit):
        server.proof("user-000003")
    assert server.leaves_of("user-000004") == (key.user_salt("user-000004"), other_leaves)
    server.close()
