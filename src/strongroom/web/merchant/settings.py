"""The merchant's settings screens: terminal keys (issued and shown once, revoked), the
webhook (URL, secret rotation) for owners and managers, and the people and their roles for
owners. Every change goes through ``merchants.portal`` (audited, rights from
``merchants.roles``); a refusal is shown in the form after ``db.settle_refusal``."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.errors import DomainError
from strongroom.merchants import portal, webhooks
from strongroom.merchants import service as merchants
from strongroom.web import core
from strongroom.web.i18n import N_, lang_of
from strongroom.web.merchant.layout import PREFIX, ROLE_NAMES, Member, guard, page

router = APIRouter(prefix=PREFIX)
KEYS: Final = "/merchant/keys"
WEBHOOK: Final = "/merchant/webhook"
MEMBERS: Final = "/merchant/members"
Role = Literal["owner", "manager", "cashier", "finance"]
REFUSALS: Final = {
    "api_key_name_taken": N_("A key with that name exists: choose another name."),
    "user_not_found": N_("There is no Strongroom account with that email."),
    "own_role": N_("You cannot change or remove your own role."),
    "operator_not_allowed": N_("Operators cannot work for a merchant."),
    "merchant_role_forbidden": N_("Your role may not do this."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


def _refusal(request: Request, session: Session, refused: DomainError) -> tuple[str, int]:
    error = db.settle_refusal(session, refused)
    lang = lang_of(request)
    return lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL)), error.status


# --------------------------------------------------------------------------- keys


class KeyForm(BaseModel):
    name: str = Field(default="", max_length=64)
    role: Role = "cashier"


def _keys_page(
    request: Request,
    session: Session,
    member: Member,
    *,
    issued: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    rows = merchants.keys_of(session=session, merchant=member.principal.merchant)
    lang = lang_of(request)
    keys = [
        {
            "id": key.id,
            "name": key.name,
            "role": ROLE_NAMES.get(role, role),
            "created": lang.when(key.created_at),
            "revoked": key.revoked_at is not None,
        }
        for key, role in rows
    ]
    return page(
        request,
        "merchant/keys.html",
        {"keys": keys, "issued": issued, "error": error, "roles": ROLE_NAMES},
        member=member,
        current=KEYS,
        status_code=status_code,
    )


@router.get("/keys", response_class=HTMLResponse)
def keys_page(
    request: Request, session: SessionDep, member: Member = guard("settings")
) -> HTMLResponse:
    return _keys_page(request, session, member)


@router.post("/keys", response_class=HTMLResponse)
def issue_key(
    body: Annotated[KeyForm, Form()],
    request: Request,
    session: SessionDep,
    member: Member = guard("settings"),
) -> HTMLResponse:
    """Issue a terminal key: the key is in this answer only (stored hashed), never again."""
    try:
        made = portal.issue_key(
            session=session,
            principal=member.principal,
            actor=member.user,
            role=body.role,
            name=body.name.strip() or None,
            origin=origin_of(request),
        )
    except DomainError as refused:
        error, status = _refusal(request, session, refused)
        return _keys_page(request, session, member, error=error, status_code=status)
    issued = {"key": made.key, "name": made.name, "role": ROLE_NAMES[body.role]}
    response = _keys_page(request, session, member, issued=issued, status_code=201)
    return response


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    key_id: Annotated[str, Path(pattern=r"^key_[0-9a-f]{16}$", max_length=20)],
    request: Request,
    session: SessionDep,
    member: Member = guard("settings"),
) -> Response:
    portal.revoke_key(
        session=session,
        principal=member.principal,
        actor=member.user,
        key_id=key_id,
        origin=origin_of(request),
    )
    return core.secure_headers(RedirectResponse(KEYS, status_code=303))


# --------------------------------------------------------------------------- webhook


class WebhookForm(BaseModel):
    url: str = Field(min_length=8, max_length=500, pattern=r"^https?://[^\s]+$")
    rotate: bool = False


@router.get("/webhook", response_class=HTMLResponse)
def webhook_page(
    request: Request, settings: SettingsDep, member: Member = guard("settings")
) -> HTMLResponse:
    merchant = member.principal.merchant
    return page(
        request,
        "merchant/webhook.html",
        {
            "url": merchant.webhook_url or "",
            "secret": webhooks.secret_for(merchant, settings.secret_key),
            "header": webhooks.SIGNATURE_HEADER,
            "saved": request.query_params.get("saved") == "1",
        },
        member=member,
        current=WEBHOOK,
    )


@router.post("/webhook")
def set_webhook(
    body: Annotated[WebhookForm, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    member: Member = guard("settings"),
) -> Response:
    """Save the URL; with ``rotate``, a new signing secret (the old one stops at once)."""
    portal.set_webhook(
        session=session,
        principal=member.principal,
        actor=member.user,
        url=body.url,
        rotate=body.rotate,
        secret_key=settings.secret_key,
        origin=origin_of(request),
    )
    return core.secure_headers(RedirectResponse(f"{WEBHOOK}?saved=1", status_code=303))


# --------------------------------------------------------------------------- members


class MemberForm(BaseModel):
    email: str = Field(min_length=3, max_length=254)
    role: Role


def _members_page(
    request: Request,
    session: Session,
    member: Member,
    *,
    error: str | None = None,
    email: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    rows = portal.members(session=session, merchant=member.principal.merchant)
    return page(
        request,
        "merchant/members.html",
        {"rows": rows, "roles": ROLE_NAMES, "error": error, "email": email, "me": member.user.id},
        member=member,
        current=MEMBERS,
        status_code=status_code,
    )


@router.get("/members", response_class=HTMLResponse)
def members_page(
    request: Request, session: SessionDep, member: Member = guard(portal.OWNERS_ONLY)
) -> HTMLResponse:
    return _members_page(request, session, member)


@router.post("/members", response_class=HTMLResponse)
def set_member(
    body: Annotated[MemberForm, Form()],
    request: Request,
    session: SessionDep,
    member: Member = guard(portal.OWNERS_ONLY),
) -> Response:
    """Add a person by their account's email, or change their role."""
    try:
        portal.set_member(
            session=session,
            principal=member.principal,
            actor=member.user,
            email=body.email.strip(),
            role=body.role,
            origin=origin_of(request),
        )
    except DomainError as refused:
        error, status = _refusal(request, session, refused)
        return _members_page(
            request, session, member, error=error, email=body.email, status_code=status
        )
    return core.secure_headers(RedirectResponse(MEMBERS, status_code=303))


@router.post("/members/{user_id}/remove", response_class=HTMLResponse)
def remove_member(
    user_id: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")],
    request: Request,
    session: SessionDep,
    member: Member = guard(portal.OWNERS_ONLY),
) -> Response:
    try:
        portal.remove_member(
            session=session,
            principal=member.principal,
            actor=member.user,
            user_id=user_id,
            origin=origin_of(request),
        )
    except DomainError as refused:
        if refused.code == "member_not_found":
            raise
        error, status = _refusal(request, session, refused)
        return _members_page(request, session, member, error=error, status_code=status)
    return core.secure_headers(RedirectResponse(MEMBERS, status_code=303))
