"""The command line: exit statuses, messages for bad input, several files at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from strongroom_verify.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run([str(tmp_path / "missing.json")], capsys)
    assert status == 2
    assert "UNREADABLE: cannot read" in out
    assert "No such file or directory" in out


def test_a_directory_is_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run([str(tmp_path)], capsys)
    assert status == 2
    assert "cannot read" in out


def test_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, world\n")
    status, out = run([str(path)], capsys)
    assert status == 2
    assert "is not JSON" in out
    assert "nor a BitMEX tree" in out


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00{")
    status, out = run([str(path)], capsys)
    assert status == 2
    assert "is not UTF-8 text" in out


@pytest.mark.parametrize(
    "document",
    [{"hello": "world"}, [1, 2, 3], "a string", {"format": "strongroom-por-v2"}, {"self": {}}],
)
def test_unknown_format(
    document: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(document))
    status, out = run([str(path)], capsys)
    assert status == 2
    assert "is not a recognised proof format" in out


def test_duplicate_keys_and_nan_are_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"self": {}, "self": {}, "pathList": []}')
    status, out = run([str(path)], capsys)
    assert status == 2
    assert "duplicate key 'self'" in out
    path.write_text('{"a": NaN}')
    status, out = run([str(path)], capsys)
    assert status == 2
    assert "NaN is not a number" in out


def test_deeply_nested_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    status, out = run([str(path)], capsys)
    assert status == 2
    assert "is not JSON" in out


def test_worst_status_wins(
    mexc_vector_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    proof = json.loads(mexc_vector_path.read_text())
    proof["self"]["accountId"] = "1745297674"
    broken.write_text(json.dumps(proof))
    assert run([str(mexc_vector_path), str(mexc_vector_path)], capsys)[0] == 0
    status, out = run([str(mexc_vector_path), str(broken)], capsys)
    assert status == 1
    assert out.count("  valid") == 1
    assert "INVALID: leaf hash mismatch" in out
    assert "also: root mismatch" in out
    assert run([str(broken), str(tmp_path / "missing"), str(mexc_vector_path)], capsys)[0] == 2


def test_verbose_lists_every_check(
    mexc_vector_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(["-v", str(mexc_vector_path)], capsys)
    assert status == 0
    assert "ok   leaf hash matches" in out
    assert "ok   root 35d01ffef2beec3ff0166c03f3d9b0cc matches" in out


def test_bom_is_tolerated(
    mexc_vector_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + mexc_vector_path.read_bytes())
    assert run([str(path)], capsys)[0] == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--account", "1"], "--account and --nonce go together"),
        (["--nonce", "zz", "--account", "1"], "--nonce must be hex"),
        (["--nonce", "", "--account", "1"], "--nonce must not be empty"),
        (["--nonce", "00", "--account", "-1"], "--account must be in 0..2^64-1"),
        (["--tree", "/nonexistent/tree.txt"], "cannot read /nonexistent/tree.txt"),
    ],
)
def test_bad_options(
    argv: list[str],
    expected: str,
    mexc_vector_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out = run([str(mexc_vector_path), *argv], capsys)
    assert status == 2
    assert expected in out


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], capsys)[0] == 2
    assert run(["--no-such-option", "x"], capsys)[0] == 2
    status, out = run(["--help"], capsys)
    assert status == 0
    assert "strongroom-verify" in out


def test_file_names_with_spaces(
    mexc_vector_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "my proof.json"
    shutil.copy(mexc_vector_path, path)
    assert run([str(path)], capsys)[0] == 0
