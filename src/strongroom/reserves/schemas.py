"""Response shapes of the reserves API (for the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel


class ReserveSource(BaseModel):
    asset: str
    amount: str
    source: str
    evidence_sha256: str | None
    as_of: str


class LatestAudit(BaseModel):
    audit_id: str
    root: str
    totals: dict[str, str]
    leaf_count: int
    created_at: str
    reserves: dict[str, str]
    ratios: dict[str, str | None]
    sources: list[ReserveSource]
