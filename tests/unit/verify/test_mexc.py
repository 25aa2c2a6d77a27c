"""MEXC: the published 2025 proof verifies; any single changed digit in it does not."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom_verify.cli import main
from strongroom_verify.formats import detect, mexc

SRC = Path(__file__).resolve().parents[3] / "src"
HEX = "0123456789abcdef"
Proof = dict[str, Any]


def load(path: Path) -> Proof:
    proof: Proof = json.loads(path.read_text())
    return proof


def test_vector_verifies(mexc_vector_path: Path) -> None:
    proof = load(mexc_vector_path)
    assert detect(proof) == "mexc"
    result = mexc.verify(proof)
    assert result.valid, result.failures
    assert result.root == "35d01ffef2beec3ff0166c03f3d9b0cc"
    assert result.balances == {"ETH": "195462.73"}
    assert result.totals == {
        "BTC": "4386831.37",
        "ETH": "5001729.74",
        "USDT": "5099023.18",
        "USDC": "0",
    }


def test_main_exit_0(mexc_vector_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(mexc_vector_path)]) == 0
    out = capsys.readouterr().out
    assert "format:   mexc" in out
    assert "root:     35d01ffef2beec3ff0166c03f3d9b0cc" in out
    assert "balances: ETH 195462.73" in out
    assert out.rstrip().endswith("valid")


def test_python_m_subprocess(mexc_vector_path: Path) -> None:
    """`python -S` leaves site-packages off the path: the verifier runs on the standard library."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run(
        [sys.executable, "-S", "-m", "strongroom_verify", str(mexc_vector_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def _other(char: str) -> str:
    """A different character of the same kind: the next digit, or the next hex digit."""
    if char.isdigit() and char not in HEX[10:]:
        return str((int(char) + 1) % 10)
    return HEX[(HEX.index(char) + 1) % 16]


def _mutations(proof: Proof) -> Iterator[tuple[Proof, str]]:
    """Every single-character change to a digit or hex character of every hash and balance,
    with the check whose message must name it."""
    entries: list[tuple[Proof, str, str]] = [(proof["self"], "self", "leaf hash mismatch")]
    for position, entry in enumerate(proof["pathList"]):
        if entry["type"] == 3:
            entries.append((entry, f"pathList[{position}]", "root"))
        elif entry["hash"] == "":
            entries.append((entry, f"pathList[{position}]", "empty sibling has non-zero"))
        else:
            entries.append((entry, f"pathList[{position}]", "root mismatch"))
    for entry, where, expected in entries:
        targets = [("hash", None)] + [("balances", coin) for coin in entry["balances"]]
        for key, coin in targets:
            text = entry[key] if coin is None else entry[key][coin]
            for offset, char in enumerate(text):
                if char not in HEX:
                    continue
                mutated = copy.deepcopy(proof)
                holder = _locate(mutated, where)
                changed = text[:offset] + _other(char) + text[offset + 1 :]
                if coin is None:
                    holder[key] = changed
                    message = "root mismatch" if expected == "root" else expected
                else:
                    holder[key][coin] = changed
                    message = f"totals mismatch for {coin}" if expected == "root" else expected
                yield mutated, message


def _locate(proof: Proof, where: str) -> Proof:
    if where == "self":
        me: Proof = proof["self"]
        return me
    position = int(where[len("pathList[") : -1])
    entry: Proof = proof["pathList"][position]
    return entry


def test_every_single_digit_change_fails(mexc_vector_path: Path) -> None:
    proof = load(mexc_vector_path)
    count = 0
    for mutated, expected in _mutations(proof):
        result = mexc.verify(mutated)
        assert not result.valid
        messages = [check.message for check in result.failures]
        assert any(expected in message for message in messages), (expected, messages)
        count += 1
    assert count >= 200


def test_first_failure_of_a_changed_own_balance_is_the_leaf(mexc_vector_path: Path) -> None:
    proof = load(mexc_vector_path)
    proof["self"]["balances"]["ETH"] = "195462.74"
    result = mexc.verify(proof)
    assert result.failures[0].message.startswith("leaf hash mismatch: computed ")


def test_flipping_a_sibling_side_fails(mexc_vector_path: Path) -> None:
    proof = load(mexc_vector_path)
    proof["pathList"][1]["type"] = 2
    result = mexc.verify(proof)
    assert not result.valid
    assert "root mismatch" in result.failures[0].message


def test_self_type_must_agree_with_the_path(mexc_vector_path: Path) -> None:
    proof = load(mexc_vector_path)
    proof["self"]["type"] = 2
    result = mexc.verify(proof)
    assert [check.name for check in result.failures] == ["self type"]


def test_totals_compare_numerically(mexc_vector_path: Path) -> None:
    proof = load(mexc_vector_path)
    proof["pathList"][-1]["balances"]["BTC"] = "4386831.370"
    assert mexc.verify(proof).valid


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda p: p["self"]["balances"].update(ETH="1e5"), "self.balances.ETH"),
        (lambda p: p["self"].pop("proofId"), "self.proofId: missing"),
        (lambda p: p["pathList"].pop(), "the last entry must be the root"),
        (lambda p: p["pathList"][1].update(level=1), "level: 1 is out of range or repeated"),
        (lambda p: p["pathList"][1].update(hash="XYZ"), "pathList[1].hash"),
    ],
)
def test_malformed_proofs_are_invalid_and_say_where(
    mexc_vector_path: Path, change: Any, where: str
) -> None:
    proof = load(mexc_vector_path)
    change(proof)
    result = mexc.verify(proof)
    assert not result.valid
    assert where in result.failures[0].message
