"""Bitget: trees from the test generator verify; tampered ones do not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from strongroom_verify.formats import bitget, detect

from .generators import build_bitget

USERS = [
    ("uid-a", "n-a", {"BTC": "0", "ETH": "5000", "USDT": "5560.49", "USDC": "0"}),
    ("uid-b", "n-b", {"BTC": "1.5", "ETH": "0", "USDT": "0.10", "USDC": "3"}),
    ("uid-c", "n-c", {"BTC": "0.00000001", "ETH": "0", "USDT": "0", "USDC": "0"}),
    ("uid-d", "n-d", {"BTC": "2", "ETH": "1", "USDT": "-0.5", "USDC": "0"}),
    ("uid-e", "n-e", {"BTC": "0", "ETH": "0", "USDT": "100", "USDC": "100"}),
]
Proof = dict[str, Any]


@pytest.fixture(scope="module")
def proofs() -> list[Proof]:
    return build_bitget(USERS)


def messages(proof: Proof) -> list[str]:
    return [check.message for check in bitget.verify(proof).failures]


def test_every_user_verifies(proofs: list[Proof]) -> None:
    roots = set()
    for proof in proofs:
        assert detect(proof) == "bitget"
        result = bitget.verify(proof)
        assert result.valid, result.failures
        roots.add(result.root)
    assert len(roots) == 1
    assert bitget.verify(proofs[0]).totals == {
        "BTC": "3.50000001",
        "ETH": "5001",
        "USDT": "5660.09",
        "USDC": "103",
    }


def test_padding_sibling(proofs: list[Proof]) -> None:
    last = proofs[4]  # five users: the fifth is paired with a padding copy of itself
    assert last["path"][0]["role"] == 0
    assert bitget.verify(last).valid
    tampered = copy.deepcopy(last)
    tampered["path"][0]["balances"]["USDT"] = "1"
    assert any("padding must copy our hash" in m for m in messages(tampered))


def test_file_key_order_is_accepted() -> None:
    """Bitget's current verifier keeps the file's key order (LinkedHashMap)."""
    order = ("USDT", "BTC", "USDC", "ETH")
    users = [(uid, nonce, {c: b[c] for c in order}) for uid, nonce, b in USERS]
    for proof in build_bitget(users, order=order):
        result = bitget.verify(proof)
        assert result.valid, result.failures
        assert any("keys in file order" in check.message for check in result.checks)


def test_hashmap_order_matters(proofs: list[Proof]) -> None:
    """The leaf commits to the HashMap order BTC, ETH, USDT, USDC: reordering the JSON keys of
    the file does not change the hash, but a leaf hashed in another order does not verify."""
    reordered = copy.deepcopy(proofs[1])
    balances = reordered["self"]["balances"]
    reordered["self"]["balances"] = {c: balances[c] for c in ("USDC", "USDT", "ETH", "BTC")}
    # USDC, USDT, ETH, BTC is now the file order; the HashMap order still matches the leaf
    assert bitget.verify(reordered).valid
    alien = build_bitget(USERS, order=("USDC", "USDT", "ETH", "BTC"))[1]
    assert any("leaf hash mismatch" in m for m in messages(alien))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["self"]["balances"].update(ETH="5001"), "leaf hash mismatch"),
        (lambda p: p["self"].update(nonce="n-x"), "leaf hash mismatch"),
        (lambda p: p["path"][1].update(merkelLeaf="0" * 16), "root mismatch"),
        (lambda p: p["path"][1]["balances"].update(BTC="9"), "root mismatch"),
        (lambda p: p["path"][1].update(role=3 - p["path"][1]["role"]), "root mismatch"),
        (lambda p: p["path"][-1]["balances"].update(USDC="1"), "totals mismatch for USDC"),
        (lambda p: p["path"][-1].update(level=2), "root level"),
        (lambda p: p["path"][0].update(level=7), "path step 0: level 7"),
        (lambda p: p["self"].update(role=2), "self role 2"),
        (lambda p: p["self"]["balances"].update(BTC="1e3"), "not a plain decimal"),
        (lambda p: p["self"]["balances"].update({'B"TC': "1"}), "is not a coin code"),
    ],
)
def test_tampering_is_rejected(proofs: list[Proof], change: Any, expected: str) -> None:
    proof = copy.deepcopy(proofs[0])
    change(proof)
    found = messages(proof)
    assert found, "must be invalid"
    assert any(expected in message for message in found), found


def test_negative_balances_are_summed_as_published(proofs: list[Proof]) -> None:
    """Bitget's format is signed: a negative balance lowers the total, and nothing in the
    format stops it (real Bitget files contain some). strongroom-por-v1 cannot encode one."""
    proof = copy.deepcopy(proofs[3])
    assert proof["self"]["balances"]["USDT"] == "-0.5"
    assert bitget.verify(proof).valid
