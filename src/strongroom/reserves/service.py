"""Publishing audits and reading them back (R-POR-3). Services never commit."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from strongroom.errors import Conflict, NotFound, ValidationFailed
from strongroom.reserves.audit import Audit, iso_utc
from strongroom.reserves.models import PorAudit, PorReserve
from strongroom_verify import por_v1
from strongroom_verify.por_v1 import Asset

RATIO_DECIMALS = 4
MAX_RESERVE_ROWS = 10_000
MAX_REPORTED = 20
MAX_LISTED_AUDITS = 100
RESERVE_COLUMNS = ("asset", "amount", "source", "evidence_sha256", "as_of")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ReserveLine:
    asset: str
    amount_minor: int
    source: str
    evidence_sha256: str | None
    as_of: date


def read_reserves(path: Path, assets: Sequence[Asset]) -> list[ReserveLine]:
    """A reserves CSV: ``asset,amount,source,evidence_sha256,as_of`` (evidence may be empty;
    as_of is YYYY-MM-DD). Every row is checked; problems are reported with line numbers."""
    scales = {asset.code: asset.scale for asset in assets}
    lines: list[ReserveLine] = []
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"asset", "amount", "source", "as_of"} <= set(
                reader.fieldnames
            ):
                raise ValidationFailed(
                    f"{path.name}: the header must be {','.join(RESERVE_COLUMNS)}",
                    code="invalid_reserves",
                )
            for row in reader:
                if len(lines) + len(problems) >= MAX_RESERVE_ROWS:
                    problems.append(f"more than {MAX_RESERVE_ROWS} rows")
                    break
                line_number = reader.line_num
                try:
                    line = _reserve_line(row, scales)
                except ValueError as error:
                    problems.append(f"line {line_number}: {error}")
                    continue
                key = (line.asset, line.source)
                if key in seen:
                    problems.append(f"line {line_number}: duplicate of line {seen[key]}")
                    continue
                seen[key] = line_number
                lines.append(line)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValidationFailed(f"cannot read {path}: {error}", code="invalid_reserves") from error
    if problems:
        raise ValidationFailed(
            f"reserves refused: {len(problems)} problem(s)",
            code="invalid_reserves",
            problems=problems[:MAX_REPORTED],
            total=len(problems),
        )
    return lines


def _reserve_line(row: dict[str, str | None], scales: dict[str, int]) -> ReserveLine:
    asset = (row.get("asset") or "").strip()
    if asset not in scales:
        raise ValueError(f"asset {asset[:32]!r} is not in this audit")
    amount = por_v1.parse_amount((row.get("amount") or "").strip(), scales[asset])
    source = (row.get("source") or "").strip()
    if not 1 <= len(source) <= 200:
        raise ValueError("source must be 1 to 200 characters")
    evidence = (row.get("evidence_sha256") or "").strip() or None
    if evidence is not None and not _SHA256.fullmatch(evidence):
        raise ValueError("evidence_sha256 must be 64 lowercase hex digits")
    try:
        as_of = date.fromisoformat((row.get("as_of") or "").strip())
    except ValueError:
        raise ValueError("as_of must be a date YYYY-MM-DD") from None
    return ReserveLine(asset, amount, source, evidence, as_of)


def publish(
    *, session: Session, audit: Audit, tree_dir: str, reserves: Sequence[ReserveLine] | None = None
) -> PorAudit:
    """Record an audit (again: same root only) and, when given, replace its reserves."""
    row = session.get(PorAudit, audit.audit_id)
    if row is not None and row.root != audit.root.hex():
        raise Conflict(
            f"audit {audit.audit_id} is already published with another root", code="audit_id_taken"
        )
    if row is None:
        row = PorAudit(
            audit_id=audit.audit_id,
            root=audit.root.hex(),
            assets=[{"code": a.code, "scale": a.scale} for a in audit.assets],
            totals=audit.totals_text(),
            leaf_count=audit.leaf_count,
            height=audit.height,
            created_at=audit.created_at,
            tree_dir=tree_dir,
        )
        session.add(row)
    else:
        row.tree_dir = tree_dir
    session.flush()
    if reserves is not None:
        session.execute(delete(PorReserve).where(PorReserve.audit_id == audit.audit_id))
        session.add_all(
            PorReserve(
                audit_id=audit.audit_id,
                asset=line.asset,
                amount_minor=line.amount_minor,
                source=line.source,
                evidence_sha256=line.evidence_sha256,
                as_of=line.as_of,
            )
            for line in reserves
        )
        session.flush()
    return row


def ratio_text(reserves_minor: int, liabilities_minor: int) -> str | None:
    """reserves / liabilities, rounded down to 4 decimals (never overstated); None when there
    are no liabilities."""
    if liabilities_minor <= 0:
        return None
    scaled = reserves_minor * 10**RATIO_DECIMALS // liabilities_minor
    return por_v1.format_amount(scaled, RATIO_DECIMALS)


def get_audit(*, session: Session, audit_id: str) -> PorAudit:
    row = session.get(PorAudit, audit_id)
    if row is None:
        raise NotFound(f"no published audit {audit_id[:64]!r}", code="audit_not_found")
    return row


def latest(*, session: Session) -> PorAudit:
    row = session.scalars(
        select(PorAudit).order_by(PorAudit.created_at.desc(), PorAudit.audit_id.desc()).limit(1)
    ).first()
    if row is None:
        raise NotFound("no audit has been published yet", code="no_audit")
    return row


def recent(*, session: Session, limit: int) -> list[PorAudit]:
    """The newest published audits first (the public reserves page), at most ``limit``."""
    if not 1 <= limit <= MAX_LISTED_AUDITS:
        raise ValidationFailed(f"limit must be 1..{MAX_LISTED_AUDITS}", code="invalid_limit")
    return list(
        session.scalars(
            select(PorAudit)
            .order_by(PorAudit.created_at.desc(), PorAudit.audit_id.desc())
            .limit(limit)
        )
    )


def summary(*, session: Session, audit: PorAudit) -> dict[str, Any]:
    """The public view of an audit: totals, reserves per asset, ratios and the evidence."""
    scales = {str(a["code"]): int(a["scale"]) for a in audit.assets}
    lines = list(
        session.scalars(
            select(PorReserve)
            .where(PorReserve.audit_id == audit.audit_id)
            .order_by(PorReserve.asset, PorReserve.source)
        )
    )
    held = dict.fromkeys(scales, 0)
    for line in lines:
        held[line.asset] = held.get(line.asset, 0) + line.amount_minor
    liabilities = {
        code: por_v1.parse_amount(text, scales[code]) for code, text in audit.totals.items()
    }
    return {
        "audit_id": audit.audit_id,
        "root": audit.root,
        "totals": audit.totals,
        "leaf_count": audit.leaf_count,
        "created_at": iso_utc(audit.created_at),
        "reserves": {code: por_v1.format_amount(held[code], scales[code]) for code in scales},
        "ratios": {code: ratio_text(held[code], liabilities.get(code, 0)) for code in scales},
        "sources": [
            {
                "asset": line.asset,
                "amount": por_v1.format_amount(line.amount_minor, scales[line.asset]),
                "source": line.source,
                "evidence_sha256": line.evidence_sha256,
                "as_of": line.as_of.isoformat(),
            }
            for line in lines
        ],
    }
