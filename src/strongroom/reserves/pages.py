"""The public proof-of-reserves pages (R-POR-3, R-POR-4), server-rendered with Jinja2.

``/reserves`` lists the published audits, newest first: root, leaf count, liabilities, reserves
and the reserve ratio per asset. ``/reserves/verify`` is where a user checks their inclusion
proof: the page's JavaScript (``static/reserves/por_v1.js``) verifies a strongroom-por-v1 proof
in the browser with Web Crypto, exactly as ``strongroom_verify.por_v1`` does offline, and
compares its root with the published one. The server only renders and serves files; nothing
here reads a proof.

Every page is sent with a strict Content-Security-Policy: scripts and styles come only from
``/static`` (no inline script or style, no CDN), and no page can be framed. The Jinja2
environment, ``static_url()`` and the headers are the web layer's (``strongroom.web.core``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from strongroom.api import SessionDep
from strongroom.errors import NotFound
from strongroom.reserves import service
from strongroom.reserves.models import PorAudit
from strongroom.web.core import (  # noqa: F401  (re-exported: tests and callers use them here)
    CONTENT_SECURITY_POLICY,
    PAGE_HEADERS,
    STATIC_URL,
    render,
    static_url,
)

LISTED_AUDITS = 50
MAX_AUDIT_ID_CHARS = 64  # por_audits.audit_id is a String(64)

router = APIRouter(tags=["pages"], include_in_schema=False)


@dataclass(frozen=True, slots=True)
class AssetRow:
    code: str
    liabilities: str
    reserves: str
    ratio: str | None

    @property
    def covered(self) -> bool:
        """Reserves at least cover liabilities (no liabilities counts as covered)."""
        return self.ratio is None or Decimal(self.ratio) >= 1


@dataclass(frozen=True, slots=True)
class AuditView:
    audit_id: str
    created_at: str
    root: str
    leaf_count: int
    assets: list[AssetRow]
    sources: list[dict[str, Any]]

    @property
    def created_text(self) -> str:
        """ "2026-12-01T00:00:00Z" → "2026-12-01 00:00 UTC"."""
        return f"{self.created_at[:10]} {self.created_at[11:16]} UTC"


def _audit_view(summary: dict[str, Any]) -> AuditView:
    totals: dict[str, str] = summary["totals"]
    return AuditView(
        audit_id=summary["audit_id"],
        created_at=summary["created_at"],
        root=summary["root"],
        leaf_count=summary["leaf_count"],
        assets=[
            AssetRow(code, totals.get(code, "0"), reserves, summary["ratios"].get(code))
            for code, reserves in summary["reserves"].items()
        ],
        sources=summary["sources"],
    )


def _page(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    return render(request, template, context, cache_control=None, with_csrf=False)


@router.get("/reserves", response_class=HTMLResponse)
def reserves_page(request: Request, session: SessionDep) -> HTMLResponse:
    """Every published audit (the latest ``LISTED_AUDITS``), newest first."""
    rows = service.recent(session=session, limit=LISTED_AUDITS)
    audits = [_audit_view(service.summary(session=session, audit=row)) for row in rows]
    return _page(
        request,
        "reserves/index.html",
        {"audits": audits, "listed_max": LISTED_AUDITS, "page": "reserves"},
    )


@router.get("/reserves/verify", response_class=HTMLResponse)
def verify_page(request: Request, session: SessionDep, audit: str | None = None) -> HTMLResponse:
    """Verify a proof in the browser: fetched for the signed-in user, or dropped as a file."""
    rows: list[PorAudit] = service.recent(session=session, limit=LISTED_AUDITS)
    if audit is not None and all(row.audit_id != audit for row in rows):
        try:  # an older audit than the listed ones: offer it too
            if len(audit) > MAX_AUDIT_ID_CHARS:
                raise NotFound("not an audit id")
            rows.append(service.get_audit(session=session, audit_id=audit))
        except NotFound:
            audit = None  # unknown: fall back to the latest
    selected = audit if audit is not None else (rows[0].audit_id if rows else None)
    return _page(
        request,
        "reserves/verify.html",
        {
            "audits": [(row.audit_id, row.created_at.strftime("%Y-%m-%d")) for row in rows],
            "selected": selected,
            "page": "verify",
        },
    )
