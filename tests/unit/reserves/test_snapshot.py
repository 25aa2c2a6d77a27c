"""Snapshot files: exact parsing, every bad row reported with its line, nothing built from a
refused file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from strongroom.cli import app
from strongroom.reserves.snapshot import Snapshot, SnapshotError, read_file
from tests.unit.reserves.helpers import SCALES


def write_csv(path: Path, *rows: str) -> Path:
    path.write_text("account_id,asset,balance\n" + "".join(f"{row}\n" for row in rows))
    return path


def test_csv_is_parsed_exactly(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "s.csv",
        "alice,BTC,1.5",
        "alice,USDT,0.000001",
        "bob,BTC,2",
        "carol,HKD,0",
        "carol,BTC,0.00000000",
        "dave,ETH,340282366920.938463463374607431",
    )
    snapshot = read_file(path, SCALES)
    assert [a.code for a in snapshot.assets] == ["BTC", "ETH", "HKD", "USDT"]
    assert snapshot.as_mapping() == {
        "alice": (150_000_000, 0, 0, 1),
        "bob": (200_000_000, 0, 0, 0),
        "dave": (0, 340282366920938463463374607431, 0, 0),
    }  # carol holds nothing: left out
    assert snapshot.totals == (350_000_000, 340282366920938463463374607431, 0, 1)


def test_the_largest_balance_fits_and_one_more_does_not(tmp_path: Path) -> None:
    top = 2**128 - 1
    path = write_csv(tmp_path / "s.csv", f"a,HKD,{top // 100}.{top % 100:02d}")
    assert read_file(path, SCALES).totals == (top,)
    path = write_csv(tmp_path / "t.csv", f"a,HKD,{(top + 1) // 100}.{(top + 1) % 100:02d}")
    with pytest.raises(SnapshotError) as refused:
        read_file(path, SCALES)
    assert "over 2^128-1" in refused.value.report()
    path = write_csv(tmp_path / "u.csv", f"a,HKD,{top // 100}.00", f"b,HKD,{top // 100}.00")
    with pytest.raises(SnapshotError, match="total of HKD exceeds"):
        read_file(path, SCALES)


def test_every_kind_of_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "bad.csv",
        "ok,BTC,1",  # line 2
        "neg,BTC,-1",  # 3
        "prec,HKD,1.001",  # 4
        "ok,BTC,2",  # 5: duplicate of line 2
        "who,DOGE,1",  # 6
        ",BTC,1",  # 7
        f"{'x' * 65},BTC,1",  # 8
        "exp,BTC,1e5",  # 9
        "sign,BTC,+1",  # 10
        "space,BTC, 1",  # 11
        "cols,BTC,1,2",  # 12
        "fine,USDT,3",  # 13
    )
    with pytest.raises(SnapshotError) as refused:
        read_file(path, SCALES)
    error = refused.value
    assert error.total == 10
    where = [problem.where for problem in error.problems]
    assert where == [f"line {n}" for n in range(3, 13)]
    report = error.report()
    for expected in (
        "negative balance",
        "more than 2 decimals",
        "duplicate of line 2",
        "unknown asset",
        "1 to 64 UTF-8 bytes",
        "not a plain decimal",
        "expected 3 columns",
    ):
        assert expected in report, expected
    assert error.code == "invalid_snapshot"


def test_only_the_first_twenty_problems_are_listed(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", *[f"u{n},BTC,-{n}" for n in range(30)])
    with pytest.raises(SnapshotError) as refused:
        read_file(path, SCALES)
    assert refused.value.total == 30
    assert len(refused.value.problems) == 20
    assert "... and 10 more" in refused.value.report()


def test_missing_columns_and_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("account,asset,amount\na,BTC,1\n")
    with pytest.raises(SnapshotError, match="account_id,asset,balance"):
        read_file(path, SCALES)
    with pytest.raises(SnapshotError, match=r"expected a \.csv or \.parquet"):
        read_file(tmp_path / "s.json", SCALES)


def test_parquet_with_text_and_decimal_balances(tmp_path: Path) -> None:
    import decimal

    table = pa.table(
        {
            "account_id": ["a", "b"],
            "asset": ["BTC", "BTC"],
            "balance": pa.array(
                [decimal.Decimal("1.50000000"), decimal.Decimal("0.00000001")], pa.decimal128(20, 8)
            ),
        }
    )
    pq.write_table(table, tmp_path / "s.parquet")
    snapshot = read_file(tmp_path / "s.parquet", SCALES)
    assert snapshot.as_mapping() == {"a": (150_000_000,), "b": (1,)}
    bad = pa.table({"account_id": ["a", "a"], "asset": ["BTC", "BTC"], "balance": ["1", "x"]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(SnapshotError) as refused:
        read_file(tmp_path / "bad.parquet", SCALES)
    assert [p.where for p in refused.value.problems] == ["row 2"]


def test_from_mapping_validates_like_a_file() -> None:
    with pytest.raises(SnapshotError, match="bad row"):
        Snapshot.from_mapping(SCALES, {"a": {"BTC": -1}})
    with pytest.raises(SnapshotError, match="no balances"):
        Snapshot.from_mapping(SCALES, {})


def test_cli_build_refuses_a_bad_file_and_writes_nothing(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", "a,BTC,1", "a,BTC,2", "b,BTC,0.123456789")
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["por", "build", "--out", str(out), "--input", str(path)])
    assert result.exit_code == 2, result.output
    assert "line 3" in result.output and "line 4" in result.output
    assert not out.exists() or not any(out.iterdir())
