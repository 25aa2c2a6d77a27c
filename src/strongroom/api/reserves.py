"""Proof of reserves over HTTP (R-POR-3, R-POR-4): the latest audit (public) and the signed-in
user's inclusion proof (their account id in an audit is their user id).

**Proof tokens** (issue #10, finding 6): a signed-in user (a bearer token, or the web session
through ``/reserves/proof-token``) gets a short-lived credential that reads their proof of one
audit and nothing else: ``prf1.<payload>.<HMAC-SHA256>``, the payload the user id, the audit id
and the expiry (``PROOF_TOKEN_TTL_S``), signed with a key derived from the secret key. It is not
an identity session: every other endpoint refuses it (``/v1/me``, balances, transfers answer 401),
and it stops working when it expires. So the verify page's script never holds a token that can
do more than read that proof for a few minutes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from strongroom.api import SessionDep, SettingsDep, UserDep, bearer_token
from strongroom.db import utcnow
from strongroom.errors import Unauthorized
from strongroom.identity import service as identity
from strongroom.reserves import service
from strongroom.reserves.proofs import ProofServers, ProofUnavailable
from strongroom.reserves.schemas import LatestAudit
from strongroom.settings import Settings

router = APIRouter(prefix="/v1/reserves", tags=["reserves"])
_servers = ProofServers()
PROOF_TOKEN_PREFIX: Final = "prf1."  # noqa: S105  (a marker, not a secret)
PROOF_TOKEN_TTL_S: Final = 5 * 60
PROOF_TOKEN_MAX_CHARS: Final = 512


class ProofTokenIn(BaseModel):
    audit_id: str = Field(min_length=1, max_length=64)


class ProofTokenOut(BaseModel):
    token: str
    audit_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _proof_key(settings: Settings) -> bytes:
    purpose = b"strongroom.api.reserves.proof-token.v1"
    return hmac.new(settings.secret_key.encode(), purpose, hashlib.sha256).digest()


def mint_proof_token(
    settings: Settings, *, user_id: str, audit_id: str, now: datetime
) -> ProofTokenOut:
    """A proof-only token for ``user_id``'s proof in ``audit_id``, valid PROOF_TOKEN_TTL_S."""
    expires_at = now + timedelta(seconds=PROOF_TOKEN_TTL_S)
    fields = {"u": user_id, "a": audit_id, "e": int(expires_at.timestamp())}
    payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
    mac = _b64(hmac.new(_proof_key(settings), payload.encode(), hashlib.sha256).digest())
    token = f"{PROOF_TOKEN_PREFIX}{payload}.{mac}"
    return ProofTokenOut(token=token, audit_id=audit_id, expires_at=expires_at)


def read_proof_token(settings: Settings, token: str, *, audit_id: str, now: datetime) -> str:
    """The user id a proof token was minted for, if it is ours, for ``audit_id`` and unexpired;
    else ``Unauthorized`` (``invalid_token``, ``token_expired``)."""
    payload, _, mac = token.removeprefix(PROOF_TOKEN_PREFIX).partition(".")
    wanted = _b64(hmac.new(_proof_key(settings), payload.encode(), hashlib.sha256).digest())
    if len(token) > PROOF_TOKEN_MAX_CHARS or not hmac.compare_digest(mac, wanted):
        raise Unauthorized("proof token is not valid", code="invalid_token")
    try:
        fields = json.loads(_unb64(payload))
        user_id, for_audit, expires_s = str(fields["u"]), str(fields["a"]), int(fields["e"])
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise Unauthorized("proof token is not valid", code="invalid_token") from error
    if for_audit != audit_id:
        raise Unauthorized("proof token is for another audit", code="invalid_token")
    if expires_s <= now.timestamp():
        raise Unauthorized("proof token has expired", code="token_expired")
    return user_id


def proof_reader(
    audit_id: str,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(bearer_token)],
) -> str:
    """Who may read this audit's proof: a proof token's user, or a signed-in user."""
    if token is not None and token.startswith(PROOF_TOKEN_PREFIX):
        return read_proof_token(settings, token, audit_id=audit_id, now=utcnow())
    return identity.authenticate(session=session, token=token).id


ProofReaderDep = Annotated[str, Depends(proof_reader)]


@router.post(
    "/proof-tokens",
    status_code=201,
    responses={
        401: {"description": "no valid token (`unauthorized`, `invalid_token`, `token_expired`)"},
        404: {"description": "`audit_not_found`"},
    },
)
def proof_token(
    body: ProofTokenIn, user: UserDep, session: SessionDep, settings: SettingsDep
) -> ProofTokenOut:
    """A short-lived token that reads only the caller's proof in this audit (``GET
    /v1/reserves/{audit_id}/proof``), for a page or tool that should not hold a full token."""
    row = service.get_audit(session=session, audit_id=body.audit_id)
    return mint_proof_token(settings, user_id=user.id, audit_id=row.audit_id, now=utcnow())


@router.get(
    "/latest",
    response_model=LatestAudit,
    responses={404: {"description": "`no_audit`: none has been published yet"}},
)
def latest(session: SessionDep) -> dict[str, Any]:
    """The latest published audit: root, liabilities, reserves and reserve ratios."""
    return service.summary(session=session, audit=service.latest(session=session))


@router.get(
    "/{audit_id}",
    response_model=LatestAudit,
    responses={404: {"description": "`audit_not_found`"}},
)
def audit(audit_id: str, session: SessionDep) -> dict[str, Any]:
    """One published audit by id, in the shape of ``/latest`` (the verify page compares a proof's
    root with it)."""
    return service.summary(
        session=session, audit=service.get_audit(session=session, audit_id=audit_id)
    )


@router.get(
    "/{audit_id}/proof",
    responses={
        401: {
            "description": "no valid token or proof token for this audit (`unauthorized`, "
            "`invalid_token`, `token_expired`)"
        },
        404: {"description": "`audit_not_found`, `not_in_audit` (no proof for this user)"},
        503: {"description": "`proof_unavailable`: this server lacks the audit's tree"},
    },
)
def proof(audit_id: str, reader: ProofReaderDep, session: SessionDep) -> dict[str, Any]:
    """The signed-in user's inclusion proof (POR_FORMATS §1), to verify offline: with the
    user's token or a proof token for this audit (``POST /v1/reserves/proof-tokens``)."""
    row = service.get_audit(session=session, audit_id=audit_id)
    server = _servers.get(Path(row.tree_dir))
    if server.audit.audit_id != row.audit_id or server.audit.root.hex() != row.root:
        raise ProofUnavailable("the tree on this server belongs to another audit")
    return server.proof(reader)
