"""What the CLI prints through Rich reaches the terminal as it was written: brackets and emoji
codes in a message, a path or an email are text, not markup (Rich ate "[spark]" from the Spark
hint and "[x]" from paths, and turned ":smile:" into an emoji)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strongroom.cli import app

runner = CliRunner()
CSV_HEADER = "account_id,asset,balance\n"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.settings import get_settings

    for name in ("STRONGROOM_DATABASE_URL", "STRONGROOM_ENV"):  # commands set them
        monkeypatch.setenv(name, "")  # remembers the value (or its absence) to restore it
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def flat(text: str) -> str:
    """``text`` without whitespace: Rich wraps long lines (and folds long words) at the width
    it finds, which must not decide whether a test passes."""
    return "".join(text.split())


def printed(output: str, expected: str) -> bool:
    return flat(expected) in flat(output)


@pytest.fixture
def bracketed(tmp_path: Path) -> Path:
    """A folder named ``[x]``: Rich would read ``[x]`` as a style and drop it."""
    folder = tmp_path / "[x]"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("folder", ["[x]", "[bold]x", ":smile:"])
def test_a_missing_input_file_is_named_whole(tmp_path: Path, folder: str) -> None:
    """Markup tags and emoji codes in a path stay as typed."""
    (tmp_path / folder).mkdir()
    missing = tmp_path / folder / "balances.csv"
    result = runner.invoke(
        app, ["por", "build", "--out", str(tmp_path / "out"), "--input", str(missing)]
    )
    assert result.exit_code == 2, result.output
    assert printed(result.output, "balances.csv: cannot read it as CSV")
    assert printed(result.output, str(missing)), result.output


def test_the_spark_hint_keeps_its_extra(
    bracketed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = bracketed / "balances.csv"
    snapshot.write_text(CSV_HEADER + "alice,HKD,1.00\n")
    for module in ("pyspark", "pyspark.sql"):  # as if pyspark were not installed
        monkeypatch.setitem(sys.modules, module, None)
    result = runner.invoke(
        app,
        [
            "por",
            "build",
            "--out",
            str(tmp_path / "out"),
            "--input",
            str(snapshot),
            "--engine",
            "spark",
        ],
    )
    assert result.exit_code == 2, result.output
    assert printed(result.output, "refused: spark_unavailable")
    assert printed(result.output, "pip install 'strongroom[spark]'"), result.output


def test_a_snapshot_report_keeps_the_brackets_of_the_rows(bracketed: Path, tmp_path: Path) -> None:
    snapshot = bracketed / "balances.csv"
    snapshot.write_text(CSV_HEADER + "alice,H[red]KD,1.00\nbob[x],HKD,abc\n")
    result = runner.invoke(
        app, ["por", "build", "--out", str(tmp_path / "out"), "--input", str(snapshot)]
    )
    assert result.exit_code == 2, result.output
    assert printed(result.output, "account 'alice' H[red]KD: unknown asset"), result.output
    assert printed(result.output, "account 'bob[x]' HKD: balance 'abc'"), result.output


def test_a_build_prints_its_out_path_whole(bracketed: Path) -> None:
    snapshot = bracketed / "balances.csv"
    snapshot.write_text(CSV_HEADER + "alice,HKD,5.00\n")
    out = bracketed / "audit"
    result = runner.invoke(app, ["por", "build", "--out", str(out), "--input", str(snapshot)])
    assert result.exit_code == 0, result.output
    assert printed(result.output, "1 accounts, 2 leaves"), result.output
    assert printed(result.output, f"s → {out}"), result.output


def test_an_operator_email_is_printed_whole(bracketed: Path) -> None:
    url = f"sqlite:///{bracketed / 'strongroom.sqlite3'}"
    upgraded = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert printed(upgraded.output, "database at head: sqlite:///")  # the URL quotes [ and ]
    email = "ops[eu]@example.com"
    created = runner.invoke(
        app,
        ["admin", "create-operator", "--email", email, "--role", "admin", "--database-url", url],
    )
    assert created.exit_code == 0, created.output
    assert printed(created.output, f"<{email}> role=admin"), created.output
