"""The Spark engine (local mode) builds the same tree file as the local engine, byte for byte."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.snapshot import Snapshot
from strongroom_verify import por_v1
from tests.conftest import missing
from tests.unit.reserves.helpers import SCALES, SECRET, random_balances

ACCOUNTS = 10_000


def _require_spark() -> None:
    lacking = []
    if importlib.util.find_spec("pyspark") is None:
        lacking.append("pyspark (pip install 'strongroom[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        lacking.append("Java 17 (apt-get install openjdk-17-jre-headless)")
    if lacking:
        missing(" and ".join(lacking), "the Spark engine test needs them")


@pytest.mark.slow
def test_spark_and_local_give_byte_identical_tree_files(tmp_path: Path) -> None:
    _require_spark()
    snapshot = Snapshot.from_mapping(SCALES, random_balances(ACCOUNTS, seed=11))
    assert snapshot.count == ACCOUNTS
    local = build(
        snapshot,
        tmp_path / "local",
        secret=SECRET,
        audit_id="same",
        options=BuildOptions(pieces=2, workers=2, block_leaves=1 << 12),
    )
    spark = build(
        snapshot,
        tmp_path / "spark",
        secret=SECRET,
        audit_id="same",
        created_at=local.created_at,
        options=BuildOptions(
            pieces=2, engine="spark", spark_master="local[2]", block_leaves=1 << 11
        ),
    )
    assert spark.root == local.root
    for name in ("tree.bin", "index.bin", "root.json"):
        assert (tmp_path / "spark" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    proof = ProofServer(tmp_path / "spark").proof("user-004242")
    assert por_v1.verify_proof(proof).valid
