"""The audit directory: all cores give the same bytes as one, an interrupted build leaves nothing
that looks complete, and the command line builds, proves and verifies."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strongroom.cli import app
from strongroom.errors import InvariantViolation, ValidationFailed
from strongroom.reserves import builder, merkle
from strongroom.reserves.audit import read_root
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.snapshot import Snapshot
from strongroom.reserves.treefile import TreeFile, TreeFileError
from strongroom_verify import por_v1
from tests.unit.reserves.helpers import (
    SCALES,
    SECRET,
    build_audit,
    random_balances,
    require_kernel,
)


def test_processes_and_block_sizes_do_not_change_a_byte(tmp_path: Path) -> None:
    balances = random_balances(1500)
    at = datetime(2026, 11, 30, tzinfo=UTC)  # root.json holds it
    one = build_audit(tmp_path / "one", balances, workers=1, created_at=at)
    many = build_audit(tmp_path / "many", balances, workers=2, block_leaves=256, created_at=at)
    for name in ("tree.bin", "index.bin", "root.json"):
        assert (one / name).read_bytes() == (many / name).read_bytes(), name


@pytest.mark.parametrize(("workers", "native"), [(1, True), (2, True), (1, False)])
def test_derived_and_kept_leaves_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, native: bool
) -> None:
    """Pass B may derive the piece vectors and padding tags again instead of keeping them
    (BuildOptions.derive_leaves, to save memory): the files are the same."""
    if native:
        require_kernel()
    else:
        monkeypatch.setattr(merkle, "kernel", None)
    balances = random_balances(700, seed=9)
    at = datetime(2026, 11, 30, tzinfo=UTC)
    built = {
        derive: build_audit(
            tmp_path / str(derive),
            balances,
            pieces=3,
            workers=workers,
            block_leaves=256,
            created_at=at,
            derive_leaves=derive,
        )
        for derive in (False, True)
    }
    for name in ("tree.bin", "index.bin", "root.json"):
        assert (built[False] / name).read_bytes() == (built[True] / name).read_bytes(), name


def test_large_builds_derive_the_leaves_small_ones_keep_them() -> None:
    snapshot = Snapshot.from_mapping(SCALES, random_balances(10))
    small = builder.Plan(snapshot, SECRET, 2, merkle.Shape(len(SCALES), 32))
    assert not small.derives(builder.BuildOptions())
    assert small.derives(builder.BuildOptions(derive_leaves=True))
    # 2^26 leaves, nearly all padding: 2 GiB of padding tags to keep, over DERIVE_ABOVE_BYTES
    large = builder.Plan(snapshot, SECRET, 2, merkle.Shape(len(SCALES), 1 << 26))
    assert large.derives(builder.BuildOptions())
    assert not large.derives(builder.BuildOptions(derive_leaves=False))


def test_tree_file_layout(tmp_path: Path) -> None:
    directory = build_audit(tmp_path / "a", random_balances(5), pieces=1)
    data = (directory / "tree.bin").read_bytes()
    assert data[:6] == b"SRPOR1"
    tree = TreeFile(directory / "tree.bin")
    assert tree.shape.leaf_count == 8 and tree.shape.height == 3
    assert [a.code for a in tree.header.assets] == ["BTC", "ETH", "HKD", "USDT"]
    assert len(data) == tree.header.header_bytes + 15 * (32 + 4 * 16)
    level0 = tree.level(0)
    assert tree.level(1) == merkle.parents(level0, 4)
    assert tree.root()[:32] == read_root(directory).root
    tree.close()
    (tmp_path / "cut.bin").write_bytes(data[:-1])
    with pytest.raises(TreeFileError):
        TreeFile(tmp_path / "cut.bin")


def test_an_existing_audit_is_not_overwritten(tmp_path: Path) -> None:
    directory = build_audit(tmp_path / "a", random_balances(5))
    before = (directory / "tree.bin").read_bytes()
    with pytest.raises(ValidationFailed, match="already holds an audit"):
        build_audit(directory, random_balances(6))
    assert (directory / "tree.bin").read_bytes() == before


@pytest.mark.parametrize("where", ["parents", "index"])
def test_an_interrupted_build_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    calls = {"count": 0}
    real_parents = merkle.parents

    def failing_parents(children: bytes, n_assets: int) -> bytes:
        calls["count"] += 1
        if calls["count"] == 5:
            raise RuntimeError("power cut")
        return real_parents(children, n_assets)

    def failing_index(*args: object) -> Path:
        raise RuntimeError("disk full")

    if where == "parents":
        monkeypatch.setattr(merkle, "parents", failing_parents)
    else:
        monkeypatch.setattr(builder, "_write_index", failing_index)
    out = tmp_path / "audit"
    with pytest.raises(RuntimeError):
        build_audit(out, random_balances(2000), block_leaves=64)
    assert sorted(os.listdir(out)) == []  # no tree.bin, no root.json, no .partial left


def test_cli_build_proof_verify_round_trip(tmp_path: Path) -> None:
    rows = [
        f"{account},{code},{amount}"
        for account, code, amount in [
            ("alice", "BTC", "0.5"),
            ("alice", "USDT", "10"),
            ("bob", "USDT", "7.25"),
        ]
    ]
    source = tmp_path / "s.csv"
    source.write_text("account_id,asset,balance\n" + "\n".join(rows) + "\n")
    secret = tmp_path / "secret.hex"
    secret.write_text(SECRET.hex())
    out = tmp_path / "audit"
    runner = CliRunner()
    built = runner.invoke(
        app,
        [
            "por",
            "build",
            "--out",
            str(out),
            "--input",
            str(source),
            "--secret-file",
            str(secret),
            "--audit-id",
            "2026-11-30",
            "--pieces",
            "3",
            "--workers",
            "1",
        ],
    )
    assert built.exit_code == 0, built.output
    root = json.loads((out / "root.json").read_text())
    assert root["format"] == "strongroom-por-v1" and root["audit_id"] == "2026-11-30"
    assert root["totals"] == {"BTC": "0.50000000", "USDT": "17.250000"}
    assert root["leaf_count"] == 8 and root["height"] == 3
    assert (out / "secret.key").stat().st_mode & 0o077 == 0
    shown = runner.invoke(app, ["por", "proof", "--tree", str(out), "alice"])
    assert shown.exit_code == 0, shown.output
    proof = json.loads(shown.stdout)
    assert proof["balances"] == {"BTC": "0.50000000", "USDT": "10.000000"}
    assert len(proof["leaves"]) == 3
    assert por_v1.verify_proof(proof).valid
    (tmp_path / "alice.json").write_text(shown.stdout)
    verified = runner.invoke(app, ["por", "verify", str(tmp_path / "alice.json")])
    assert verified.exit_code == 0, verified.output
    missing = runner.invoke(app, ["por", "proof", "--tree", str(out), "carol"])
    assert missing.exit_code == 1
    assert "not_in_audit" in missing.output


def test_proofs_need_the_right_secret(tmp_path: Path) -> None:
    directory = build_audit(tmp_path / "a", random_balances(20))
    wrong = tmp_path / "wrong.key"
    wrong.write_text(bytes(32).hex())
    server = ProofServer(directory, secret_file=wrong)
    assert server.leaves_of("user-000001") is None


def test_sort_order_breaks_ties_on_the_second_word() -> None:
    import numpy as np

    keys = np.array(
        [[0] * 8 + [2] + [0] * 7, [0] * 8 + [1] + [0] * 7, [1] + [0] * 15], dtype=np.uint8
    )
    assert list(builder.sort_order(keys)) == [1, 0, 2]
    with pytest.raises(InvariantViolation, match="share an order key"):
        builder.sort_order(np.zeros((2, 16), dtype=np.uint8))


def test_one_account_still_makes_a_tree(tmp_path: Path) -> None:
    snapshot = Snapshot.from_mapping(SCALES, {"solo": {"BTC": 1}})
    audit = builder.build(
        snapshot, tmp_path / "a", secret=SECRET, options=builder.BuildOptions(pieces=1, workers=1)
    )
    assert audit.leaf_count == 2
    proof = ProofServer(tmp_path / "a").proof("solo")
    assert por_v1.verify_proof(proof).valid
