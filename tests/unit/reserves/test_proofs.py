"""Property tests: for random snapshots every user's proof verifies, the totals are the input's
sums, and any single change to a proof is rejected by the standalone verifier."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.reserves.audit import read_root
from strongroom.reserves.proofs import NotInAudit, ProofServer
from strongroom_verify import por_v1
from strongroom_verify.cli import main as verify_main
from tests.unit.reserves.helpers import SCALES, build_audit, random_balances

AMOUNTS = st.one_of(st.just(0), st.integers(1, 10**6), st.integers(1, 10**30))
BALANCES = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-é", min_size=1, max_size=20),
    st.dictionaries(st.sampled_from(sorted(SCALES)), AMOUNTS, min_size=1, max_size=4),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BALANCES, st.integers(1, 4))
def test_every_proof_verifies_and_totals_are_the_sums(
    balances: dict[str, dict[str, int]], pieces: int
) -> None:
    present = sorted({code for row in balances.values() for code in row})
    with tempfile.TemporaryDirectory() as directory:
        audit_dir = build_audit(Path(directory) / "audit", balances, pieces=pieces)
        audit = read_root(audit_dir)
        assert [a.code for a in audit.assets] == present
        assert audit.totals == tuple(
            sum(row.get(code, 0) for row in balances.values()) for code in present
        )
        server = ProofServer(audit_dir)
        for account_id, row in balances.items():
            if not any(row.values()):
                with pytest.raises(NotInAudit):
                    server.proof(account_id)
                continue
            proof = server.proof(account_id)
            result = por_v1.verify_proof(proof)
            assert result.valid, result.failures
            assert len(proof["leaves"]) == pieces
            assert proof["balances"] == {
                a.code: por_v1.format_amount(row.get(a.code, 0), a.scale) for a in audit.assets
            }
        with pytest.raises(NotInAudit):
            server.proof("nobody-has-this-id")
        server.close()


@pytest.fixture(scope="module")
def proof() -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as directory:
        audit_dir = build_audit(Path(directory) / "audit", random_balances(300), pieces=3)
        server = ProofServer(audit_dir)
        yield server.proof("user-000042")
        server.close()


def _flip_hex(text: str, position: int) -> str:
    position %= len(text)
    replacement = "0" if text[position] != "0" else "1"
    return text[:position] + replacement + text[position + 1 :]


def _bump(amounts: dict[str, str], code: str) -> None:
    scale = next(s for c, s in SCALES.items() if c == code)
    amounts[code] = por_v1.format_amount(por_v1.parse_amount(amounts[code], scale) + 1, scale)


def _mutate(proof: dict[str, Any], kind: str, data: st.DataObject) -> dict[str, Any]:
    tampered = copy.deepcopy(proof)
    leaf = tampered["leaves"][data.draw(st.integers(0, len(tampered["leaves"]) - 1))]
    height = len(leaf["path"])
    step = leaf["path"][data.draw(st.integers(0, height - 1))]
    code = data.draw(st.sampled_from(sorted(tampered["totals"])))
    if kind == "user balance":
        _bump(tampered["balances"], code)
    elif kind == "leaf balance":
        _bump(leaf["balances"], code)
    elif kind == "path balance":
        _bump(step["balances"], code)
    elif kind == "path hash":
        step["hash"] = _flip_hex(step["hash"], data.draw(st.integers(0, 63)))
    elif kind == "index":
        leaf["index"] ^= 1 << data.draw(st.integers(0, height - 1))
    elif kind == "salt":
        tampered["user_salt"] = _flip_hex(tampered["user_salt"], data.draw(st.integers(0, 63)))
    elif kind == "side":  # swap two levels of the path: each sibling lands on the wrong level
        first = data.draw(st.integers(0, height - 2))
        leaf["path"][first], leaf["path"][first + 1] = leaf["path"][first + 1], leaf["path"][first]
    elif kind == "piece":
        leaf["piece"] = (leaf["piece"] + 1) % 16
    elif kind == "root":
        tampered["root"] = _flip_hex(tampered["root"], data.draw(st.integers(0, 63)))
    elif kind == "totals":
        _bump(tampered["totals"], code)
    elif kind == "account id":
        tampered["account_id"] += "x"
    return tampered


KINDS = [
    "user balance",
    "leaf balance",
    "path balance",
    "path hash",
    "index",
    "salt",
    "side",
    "piece",
    "root",
    "totals",
    "account id",
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(KINDS), st.data())
def test_any_single_change_is_rejected(
    proof: dict[str, Any], kind: str, data: st.DataObject
) -> None:
    assert por_v1.verify_proof(proof).valid
    tampered = _mutate(proof, kind, data)
    if tampered == proof:  # swapping two equal path steps changes nothing
        return
    result = por_v1.verify_proof(tampered)
    assert not result.valid, kind


def test_the_command_line_verifier_accepts_it_and_rejects_a_tampered_copy(
    proof: dict[str, Any], tmp_path: Path
) -> None:
    good = tmp_path / "proof.json"
    good.write_text(json.dumps(proof))
    assert verify_main([str(good)]) == 0
    tampered = copy.deepcopy(proof)
    tampered["leaves"][0]["path"][0]["hash"] = _flip_hex(
        tampered["leaves"][0]["path"][0]["hash"], 0
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tampered))
    assert verify_main([str(bad)]) == 1
