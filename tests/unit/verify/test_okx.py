"""OKX v1 and v2: trees from the test generator verify; tampered ones do not."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from strongroom_verify.cli import main
from strongroom_verify.formats import detect, okx_v1, okx_v2

from .generators import build_okx_v1, build_okx_v2

USERS = [
    ("nonce-a", ("1.000069", "0.99908176", "19398.33550812")),
    ("nonce-b", ("0", "0", "0.00007282")),
    ("nonce-c", ("0.00377799", "0", "1.95350801")),
    ("nonce-d", ("25", "300.5", "0")),
    ("nonce-e", ("0.00000001", "0.1", "7")),
]
Proof = dict[str, Any]


def messages(result: Any) -> list[str]:
    return [check.message for check in result.failures]


# ------------------------------------------------------------------------------------------------
# v1


@pytest.fixture(scope="module")
def v1_proofs() -> list[Proof]:
    return build_okx_v1(USERS)


def test_v1_every_user_verifies(v1_proofs: list[Proof]) -> None:
    roots = set()
    for proof, (_, balances) in zip(v1_proofs, USERS, strict=True):
        assert detect(proof) == "okx-v1"
        result = okx_v1.verify(proof)
        assert result.valid, result.failures
        assert tuple(result.balances.values()) == balances
        roots.add(result.root)
    assert len(roots) == 1
    totals = okx_v1.verify(v1_proofs[0]).totals
    assert totals == {"BTC": "26.003847", "ETH": "301.59908176", "USDT": "19407.28908895"}


def test_v1_padding_sibling_is_used(v1_proofs: list[Proof]) -> None:
    last = v1_proofs[4]  # five users: the fifth is paired with a padding node
    assert last["path"][0]["type"] == 4
    assert okx_v1.verify(last).valid
    tampered = copy.deepcopy(last)
    tampered["path"][0]["balances"]["BTC"] = "1"
    assert "padding sibling has non-zero balances" in " ".join(messages(okx_v1.verify(tampered)))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["self"]["balances"].update(USDT="19398.33550813"), "leaf hash mismatch"),
        (lambda p: p["self"].update(nonce="nonce-x"), "leaf hash mismatch"),
        (lambda p: p["path"][1].update(hash="0" * 64), "root mismatch"),
        (lambda p: p["path"][1]["balances"].update(ETH="0.1"), "root mismatch"),
        (lambda p: p["path"][1].update(type=3 - p["path"][1]["type"]), "root mismatch"),
        (lambda p: p["path"][-1]["balances"].update(BTC="26"), "totals mismatch for BTC"),
        (lambda p: p["path"][-1].update(hash="f" * 64), "root mismatch"),
        (lambda p: p["path"][-1].update(height=9), "root height 9"),
        (lambda p: p["path"][1].update(height=5), "path step 1: height 5"),
        (lambda p: p["self"].update(type=2), "self type 2"),
        (lambda p: p["path"].pop(1), "root"),
        (lambda p: p["self"]["balances"].update(BTC="1e0"), "not a plain decimal"),
        (lambda p: p["self"]["balances"].update(DOGE="1"), "'DOGE' is not one of"),
    ],
)
def test_v1_tampering_is_rejected(v1_proofs: list[Proof], change: Any, expected: str) -> None:
    proof = copy.deepcopy(v1_proofs[0])
    change(proof)
    found = messages(okx_v1.verify(proof))
    assert found, "must be invalid"
    assert any(expected in message for message in found), found


# ------------------------------------------------------------------------------------------------
# v2


@pytest.fixture(scope="module")
def v2() -> tuple[str, list[Proof]]:
    return build_okx_v2(USERS)


def test_v2_every_user_verifies(v2: tuple[str, list[Proof]]) -> None:
    tree, files = v2
    for user_file, (_, total) in zip(files, USERS, strict=True):
        assert detect(user_file) == "okx-v2"
        result = okx_v2.verify(user_file, tree)
        assert result.valid, result.failures
        assert tuple(result.balances.values()) == total
    assert okx_v2.verify(files[0], tree).root == tree.splitlines()[0].split(",")[0]


def test_v2_through_main(
    v2: tuple[str, list[Proof]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree, files = v2
    (tmp_path / "tree.txt").write_text(tree)
    (tmp_path / "user.json").write_text(json.dumps(files[2]))
    assert main([str(tmp_path / "user.json"), "--tree", str(tmp_path / "tree.txt")]) == 0
    assert "okx-v2" in capsys.readouterr().out
    assert main([str(tmp_path / "user.json")]) == 2
    assert "needs --tree" in capsys.readouterr().out


def _tree_lines(tree: str) -> list[str]:
    return tree.splitlines()


def _set_line(tree: str, number: int, line: str) -> str:
    lines = _tree_lines(tree)
    lines[number - 1] = line
    return "\n".join(lines)


def test_v2_tampered_user_file(v2: tuple[str, list[Proof]]) -> None:
    tree, files = v2
    user = copy.deepcopy(files[0])
    user["nonce"] = "nonce-z"
    assert "user hash mismatch" in messages(okx_v2.verify(user, tree))[0]
    user = copy.deepcopy(files[0])
    user["nodes"][1]["balances"]["ETH"] = "0.5"
    found = messages(okx_v2.verify(user, tree))
    assert any("user leaf 1: leaf hash mismatch" in m for m in found)
    assert any("not among the tree's leaves" in m for m in found)
    user = copy.deepcopy(files[0])
    user["nodes"].append(user["nodes"][0])
    assert any("user leaves repeat" in m for m in messages(okx_v2.verify(user, tree)))


def test_v2_tampered_tree_names_the_line(v2: tuple[str, list[Proof]]) -> None:
    tree, files = v2
    lines = _tree_lines(tree)
    # the leftmost node at height 2 is listed last of its level, and is never padding
    number = max(n for n, line in enumerate(lines, start=1) if line.split(",")[1] == "2")
    balances = lines[number - 1].split(",", 2)[2]
    tampered = _set_line(tree, number, f"{'0' * 64},2,{balances}")
    found = messages(okx_v2.verify(files[0], tampered))
    assert any(f"tree line {number}: hash mismatch" in m for m in found), found
    leaf_line = len(lines)  # the last line is the leftmost leaf
    hash_, _, balances = lines[-1].split(",", 2)
    changed = json.loads(balances)
    changed["USDT"] = "1000"
    tampered = _set_line(tree, leaf_line, f"{hash_},1,{json.dumps(changed)}")
    found = messages(okx_v2.verify(files[0], tampered))
    assert any("balance mismatch for USDT" in m for m in found), found


def test_v2_swapped_siblings_and_root(v2: tuple[str, list[Proof]]) -> None:
    tree, files = v2
    lines = _tree_lines(tree)
    swapped = [*lines[:-2], lines[-1], lines[-2]]  # two leaves change sides
    found = messages(okx_v2.verify(files[0], "\n".join(swapped)))
    assert any("hash mismatch" in m for m in found), found
    root_hash, height, balances = lines[0].split(",", 2)
    understated = json.dumps({**json.loads(balances), "BTC": "1"})
    found = messages(
        okx_v2.verify(files[0], _set_line(tree, 1, f"{root_hash},{height},{understated}"))
    )
    assert any("totals mismatch for BTC" in m for m in found), found


@pytest.mark.parametrize(
    ("tree_text", "expected"),
    [
        ("", "expected one root line"),
        ("nonsense", "tree line 1: expected hash,height"),
        (f"{'a' * 64},2,{{}}\n", "tree line 1.BTC: missing"),
    ],
)
def test_v2_malformed_tree(v2: tuple[str, list[Proof]], tree_text: str, expected: str) -> None:
    _, files = v2
    found = messages(okx_v2.verify(files[0], tree_text))
    assert any(expected in m for m in found), found
