"""Proof of reserves over HTTP (R-POR-3, R-POR-4): the latest audit (public) and the signed-in
user's inclusion proof (their account id in an audit is their user id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from strongroom.api import SessionDep, UserDep
from strongroom.reserves import service
from strongroom.reserves.proofs import ProofServers, ProofUnavailable
from strongroom.reserves.schemas import LatestAudit

router = APIRouter(prefix="/v1/reserves", tags=["reserves"])
_servers = ProofServers()


@router.get("/latest", response_model=LatestAudit)
def latest(session: SessionDep) -> dict[str, Any]:
    """The latest published audit: root, liabilities, reserves and reserve ratios."""
    return service.summary(session=session, audit=service.latest(session=session))


@router.get("/{audit_id}", response_model=LatestAudit)
def audit(audit_id: str, session: SessionDep) -> dict[str, Any]:
    """One published audit by id, in the shape of ``/latest`` (the verify page compares a proof's
    root with it)."""
    return service.summary(
        session=session, audit=service.get_audit(session=session, audit_id=audit_id)
    )


@router.get("/{audit_id}/proof")
def proof(audit_id: str, user: UserDep, session: SessionDep) -> dict[str, Any]:
    """The signed-in user's inclusion proof (POR_FORMATS §1), to verify offline."""
    row = service.get_audit(session=session, audit_id=audit_id)
    server = _servers.get(Path(row.tree_dir))
    if server.audit.audit_id != row.audit_id or server.audit.root.hex() != row.root:
        raise ProofUnavailable("the tree on this server belongs to another audit")
    return server.proof(user.id)
