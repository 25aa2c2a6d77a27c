"""What a verification returns, and the small helpers every format uses to build it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_FAILURES_PER_CHECK = 5  # a tampered tree can fail at every node: report a few, count the rest


class ProofError(Exception):
    """The file does not have the shape its format requires; the message says where."""


class Check(NamedTuple):
    """One check: its name, whether it held, and a message that says what and where."""

    name: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Result:
    """The outcome of verifying one proof file."""

    format: str
    valid: bool
    checks: tuple[Check, ...]
    balances: Mapping[str, str]
    root: str | None
    totals: Mapping[str, str] | None

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)


@dataclass
class Report:
    """Collects checks and what the proof says while a format's verifier runs."""

    format: str
    balances: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    totals: dict[str, str] | None = None
    checks: list[Check] = field(default_factory=list)
    _failures_by_name: dict[str, int] = field(default_factory=dict)

    def check(self, name: str, ok: bool, failure: str, success: str | None = None) -> bool:
        """Record a check (`failure` says what failed and where); return whether it held."""
        if ok:
            self.checks.append(Check(name, True, success or f"{name}: ok"))
            return True
        count = self._failures_by_name.get(name, 0) + 1
        self._failures_by_name[name] = count
        if count <= MAX_FAILURES_PER_CHECK:
            self.checks.append(Check(name, False, failure))
        return False

    def fail(self, name: str, message: str) -> None:
        self.check(name, False, message)

    def failure_count(self, name: str) -> int:
        return self._failures_by_name.get(name, 0)

    def result(self) -> Result:
        checks = list(self.checks)
        for name, count in self._failures_by_name.items():
            if count > MAX_FAILURES_PER_CHECK:
                more = count - MAX_FAILURES_PER_CHECK
                checks.append(Check(name, False, f"{name}: {more} more failures not shown"))
        valid = bool(checks) and all(check.ok for check in checks)
        return Result(
            format=self.format,
            valid=valid,
            checks=tuple(checks),
            balances=dict(self.balances),
            root=self.root,
            totals=None if self.totals is None else dict(self.totals),
        )


def run_guarded(report: Report, body: Callable[[], None]) -> Result:
    """Run a verifier body; a ProofError becomes a failed "structure" check."""
    try:
        body()
    except ProofError as error:
        report.fail("structure", str(error))
    return report.result()
