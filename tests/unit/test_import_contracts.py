"""The layers are checked (issue #9): ``lint-imports`` (import-linter, with the contracts in
``pyproject.toml``, as CI runs it) passes on the real tree, and fails on a copy of ``src/`` with
one violation planted: a domain importing the web layer or the HTTP API, a cycle between two
modules, the standalone verifier importing strongroom, a new package importing the web layer.
Each planted import breaks the contract that names it, and the report shows the import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
TIMEOUT_S = 120
LAYERS = "Layers, from the entry points down to the base modules"
DOMAINS = "No domain imports web, api, cli or app"
PROTECTED = "Only app, cli and web import web, api or cli"
CYCLES = "No import cycles between siblings"
VERIFIER = "strongroom_verify imports nothing of strongroom"
CONTRACTS = (LAYERS, DOMAINS, PROTECTED, CYCLES, VERIFIER)


@dataclass(frozen=True)
class Report:
    returncode: int
    text: str

    def verdicts(self) -> dict[str, str]:
        """Each contract's name → ``KEPT`` or ``BROKEN``, from the report's summary."""
        found = {}
        for line in self.text.splitlines():
            name, _, verdict = line.rstrip().rpartition(" ")
            if verdict in ("KEPT", "BROKEN") and name in CONTRACTS:
                found[name] = verdict
        return found

    def broken(self) -> set[str]:
        return {name for name, verdict in self.verdicts().items() if verdict == "BROKEN"}


def lint_imports(source: Path, config: Path) -> Report:
    """Run ``lint-imports`` as CI does, on the packages under ``source`` (first on the path, so
    the copy is analysed rather than the installed tree)."""
    assert LINT_IMPORTS.is_file(), f"{LINT_IMPORTS} is missing: pip install -e '.[test]'"
    environment = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(config)],
        cwd=source.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    return Report(done.returncode, done.stdout + done.stderr)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of ``src/`` (Python files only) and ``pyproject.toml`` to plant violations in."""
    shutil.copytree(
        ROOT / "src",
        tmp_path / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so", "*.c"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path / "src"


def plant(tree: Path, module: str, line: str) -> None:
    """Add ``line`` at the end of ``module`` (a path under ``src/``); the module must exist."""
    path = tree / module
    assert path.is_file(), path
    path.write_text(path.read_text() + f"\n{line}  # planted by the test\n")


def test_the_tree_keeps_every_contract() -> None:
    report = lint_imports(ROOT / "src", ROOT / "pyproject.toml")
    assert report.returncode == 0, report.text
    assert report.verdicts() == dict.fromkeys(CONTRACTS, "KEPT"), report.text
    assert "Contracts: 5 kept, 0 broken." in report.text


def test_the_unchanged_copy_keeps_every_contract(tree: Path) -> None:
    """The copy itself is clean: what breaks below is the planted line, nothing else."""
    report = lint_imports(tree, tree.parent / "pyproject.toml")
    assert report.returncode == 0, report.text
    assert report.broken() == set()


def test_a_domain_that_imports_the_web_layer_fails(tree: Path) -> None:
    plant(tree, "strongroom/ledger/service.py", "import strongroom.web")
    report = lint_imports(tree, tree.parent / "pyproject.toml")
    assert report.returncode == 1, report.text
    assert report.broken() == {LAYERS, DOMAINS, PROTECTED, CYCLES}, report.text  # web → ledger
    assert "strongroom.ledger.service -> strongroom.web" in report.text


def test_a_domain_that_imports_the_http_api_fails(tree: Path) -> None:
    plant(tree, "strongroom/reserves/service.py", "from strongroom import api")
    report = lint_imports(tree, tree.parent / "pyproject.toml")
    assert report.returncode == 1, report.text
    assert report.broken() == {LAYERS, DOMAINS, PROTECTED, CYCLES}, report.text  # api → reserves
    assert "strongroom.reserves.service -> strongroom.api" in report.text
    assert "A domain is called by the web layer" in report.text  # the contract's guidance


def test_an_import_up_the_domain_layers_fails(tree: Path) -> None:
    """notify below identity: the outbox may not read identity's users again."""
    plant(tree, "strongroom/notify/outbox.py", "from strongroom.identity import models")
    report = lint_imports(tree, tree.parent / "pyproject.toml")
    assert report.returncode == 1, report.text
    assert LAYERS in report.broken() and DOMAINS not in report.broken(), report.text
    assert "strongroom.notify.outbox -> strongroom.identity.models" in report.text


def test_a_cycle_between_two_modules_fails(tree: Path) -> None:
    """spark.py importing builder back (the cycle the review found) breaks only the cycles
    contract: both modules are in one layer."""
    plant(tree, "strongroom/reserves/spark.py", "from strongroom.reserves import builder")
    report = lint_imports(tree, tree.parent / "pyproject.toml")
    assert report.returncode == 1, report.text
    assert report.broken() == {CYCLES}, report.text
    assert "No cycles are allowed in strongroom.reserves." in report.text
    assert "- .spark -> .builder (1 import)" in report.text


def test_the_verifier_importing_strongroom_fails(tree: Path) -> None:
    plant(tree, "strongroom_verify/por_v1.py", "import strongroom.money")
    report = lint_imports(tree, tree.parent / "pyproject.toml")
    assert report.returncode == 1, report.text
    assert VERIFIER in report.broken(), report.text
    assert "strongroom_verify.por_v1 -> strongroom.money" in report.text


def test_a_new_package_that_imports_the_web_layer_fails(tree: Path) -> None:
    """A package not yet in the layers (a wave-2 domain) is still kept off web and api."""
    package = tree / "strongroom" / "programmes"
    package.mkdir()
    (package / "__init__.py").write_text('"""Vouchers, points, yield."""\n')
    (package / "service.py").write_text("from strongroom.web import core\n")
    report = lint_imports(tree, tree.parent / "pyproject.toml")
    assert report.returncode == 1, report.text
    assert report.broken() == {PROTECTED}, report.text
    assert "strongroom.programmes.service -> strongroom.web.core" in report.text
