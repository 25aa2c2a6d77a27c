"""BitMEX: trees from the test generator verify for each account; tampered ones do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom_verify.cli import main
from strongroom_verify.formats import bitmex, detect

from .generators import bitmex_sub_nonce, build_bitmex

LIABILITIES = {101: 5_000_000, 102: 1, 103: 250_000_000_000, 104: 0, 105: 77}
NONCES = {account: bytes([account % 256]) * 32 for account in LIABILITIES}
BLOCK_HEIGHT = 870_000


@pytest.fixture(scope="module")
def tree() -> tuple[str, dict[int, list[int]]]:
    return build_bitmex(LIABILITIES, NONCES, BLOCK_HEIGHT)


def messages(text: str, account: int, nonce: bytes) -> list[str]:
    return [check.message for check in bitmex.verify(text, account, nonce).failures]


def test_every_account_verifies(tree: tuple[str, dict[int, list[int]]]) -> None:
    text, owners = tree
    assert detect(text)
    assert 104 not in owners  # zero balances are dropped
    for account, value in LIABILITIES.items():
        if not value:
            continue
        result = bitmex.verify(text, account, NONCES[account])
        assert result.valid, result.failures
        assert result.balances == {"XBt": str(value)}
        assert result.totals == {"XBt": str(sum(LIABILITIES.values()))}


def test_per_proof_sub_nonce_is_accepted(tree: tuple[str, dict[int, list[int]]]) -> None:
    text, _ = tree
    key = bitmex_sub_nonce(NONCES[103], BLOCK_HEIGHT, 103)
    result = bitmex.verify(text, 103, key)
    assert result.valid
    assert any("per-proof sub-nonce" in check.message for check in result.checks)


def test_wrong_nonce_or_account(tree: tuple[str, dict[int, list[int]]]) -> None:
    text, _ = tree
    assert messages(text, 101, b"\x00" * 32) == ["no leaf matches account 101 with this nonce"]
    assert messages(text, 102, NONCES[101]) == ["no leaf matches account 102 with this nonce"]
    assert messages(
        text.replace(f"block_height:{BLOCK_HEIGHT}", "block_height:1"), 101, NONCES[101]
    )


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_tampered_leaf_value(tree: tuple[str, dict[int, list[int]]]) -> None:
    text, owners = tree
    lines = _lines(text)
    leaf_count = len(lines) // 2  # a header line, then 2 * leaf_count - 1 nodes
    first_leaf_line = len(lines) - leaf_count + 1
    number = first_leaf_line + owners[101][0]
    node_hash, value = lines[number - 1].split(",")
    lines[number - 1] = f"{node_hash},{int(value) + 1}"
    found = messages("\n".join(lines), 101, NONCES[101])
    assert any("value mismatch" in m or "totals mismatch" in m for m in found), found


def test_tampered_hash_names_the_line(tree: tuple[str, dict[int, list[int]]]) -> None:
    text, _ = tree
    lines = _lines(text)
    value = lines[2].split(",")[1]
    lines[2] = f"{'0' * 64},{value}"
    found = messages("\n".join(lines), 101, NONCES[101])
    assert any(m.startswith("tree line 3 (row 1): hash mismatch") for m in found), found
    assert any(m.startswith("root mismatch") for m in found), found


def test_swapped_leaves(tree: tuple[str, dict[int, list[int]]]) -> None:
    text, _ = tree
    lines = _lines(text)
    lines[-1], lines[-2] = lines[-2], lines[-1]
    assert any("hash mismatch" in m for m in messages("\n".join(lines), 101, NONCES[101]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("block_height:x\n", "line 1: expected block_height:N"),
        ("block_height:1\n" + "ab,1\n", "tree line 2: expected hash,value"),
        ("block_height:1\n" + f"{'a' * 64},1\n{'b' * 64},1\n", "is not a full binary tree"),
        ("block_height:1\n" + f"{'a' * 64},{2**64}\n", "tree line 2: expected hash,value"),
    ],
)
def test_malformed_trees(text: str, expected: str) -> None:
    found = messages(text, 1, b"\x01")
    assert any(expected in m for m in found), found


def test_through_main(
    tree: tuple[str, dict[int, list[int]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, _ = tree
    path = tmp_path / "liabilities.csv"
    path.write_text(text)
    nonce = NONCES[105].hex()
    assert main([str(path), "--account", "105", "--nonce", nonce]) == 0
    assert "balances: XBt 77" in capsys.readouterr().out
    assert main([str(path), "--account", "105", "--nonce", "00" * 32]) == 1
    assert "INVALID: no leaf matches account 105" in capsys.readouterr().out
    assert main([str(path)]) == 2
    assert "needs --account N and --nonce HEX" in capsys.readouterr().out
