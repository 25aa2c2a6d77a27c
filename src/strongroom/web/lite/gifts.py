"""Gifts / red packets (issue #12 item 5, R-GIFT-1): send one, share its link and code, claim.

- ``/app/gifts``: the send form (asset, amount, shares, equal or random split) and the list of
  gifts the user sent (status, claimed shares). A send goes through ``api.gifts.create_once``,
  the path of ``POST /v1/gifts`` (one gift per render of the form: its idempotency key), then
  303 to the gift's page.
- ``/app/gifts/<id>``: one of the user's gifts: the claim link and the code, each with a copy
  button (``app.js``), and the shares, claimed or not. Anyone else's: 404.
- ``/app/gifts/claim``: the claim page, the code prefilled from the link (``?code=``). Open to
  everyone: signed out, it shows the code and a sign-in link that comes back here with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, RowIdPath, SessionDep, SettingsDep
from strongroom.api.gifts import create_once
from strongroom.db import utcnow
from strongroom.errors import DomainError, InvalidAmount, ValidationFailed
from strongroom.gifts import service as gifts
from strongroom.gifts.models import Gift
from strongroom.gifts.split import Split
from strongroom.money import AssetRegistry
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep, optional_user

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/gifts"
CLAIM_PATH: Final = gifts.CLAIM_PATH
LIST_MAX: Final = 20

STATUSES: Final = {
    "open": N_("Open"),
    "claimed": N_("All claimed"),
    "expired": N_("Expired, rest returned"),
}
REFUSALS: Final = {
    "invalid_shares": N_("Choose from 1 to %(max)s shares."),
    "gift_amount_too_small": N_(
        "Each share needs at least one minor unit: send at least %(min)s %(asset)s."
    ),
    "funds_locked": N_(
        "%(locked)s %(asset)s of your balance is locked for now and cannot be gifted "
        "(it unlocks %(when)s)."
    ),
    "invalid_split": N_("Choose an equal or a random split."),
    "invalid_claim_code": N_(
        "A claim code has 20 letters and digits, like ABCDE-FGHJK-LMNPQ-RSTUV."
    ),
    "gift_not_found": N_("No gift has this code. Check it and try again."),
    "gift_expired": N_("This gift has expired: what was left went back to its sender."),
    "gift_already_claimed": N_("You have already claimed a share of this gift."),
    "gift_exhausted": N_("Too late: every share of this gift has been claimed."),
    "gift_own_claim": N_("This is your own gift: share the link with others."),
    "cross_region_transfer": N_(
        "This gift was sent in another region: gifts between regions are not possible."
    ),
    "operator_not_allowed": N_("Operators do not send or claim gifts."),
}


class GiftForm(BaseModel):
    asset: str = Field(default="", max_length=16)
    amount: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    shares: str = Field(default="", max_length=8)
    split: str = Field(default="equal", max_length=8)
    idempotency_key: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)


class ClaimForm(BaseModel):
    claim_code: str = Field(default="", max_length=64)


def _refusal(lang: Lang, error: DomainError, registry: AssetRegistry, settings: Settings) -> str:
    message = REFUSALS.get(error.code)
    if message is None:
        return forms.refusal(lang, error, registry, settings)
    text = lang.gettext(message)
    details = error.details
    if error.code == "invalid_shares":
        return text % {"max": settings.gifts.shares_max}
    if error.code == "gift_amount_too_small":
        return text % {"min": details.get("min_amount", ""), "asset": details.get("asset", "")}
    if error.code == "funds_locked":
        asset = registry.get(details.get("asset"))
        locked = details.get("locked_minor", "0")
        unlocks = details.get("unlocks_at")
        when = lang.when(datetime.fromisoformat(unlocks)) if unlocks else ""
        return text % {
            "locked": lang.amount(int(locked), asset.scale),
            "asset": asset.code,
            "when": when,
        }
    return text


def _rows(lang: Lang, registry: AssetRegistry, rows: list[Gift]) -> list[dict[str, object]]:
    out = []
    for gift in rows:
        scale = registry.get(gift.asset).scale
        out.append(
            {
                "id": gift.id,
                "url": f"{PATH}/{gift.id}",
                "amount": lang.amount(gift.amount_minor, scale),
                "asset": gift.asset,
                "claimed": gift.claimed_shares,
                "shares": gift.shares,
                "status": gift.status,
                "status_text": lang.gettext(STATUSES[gift.status]),
                "when": lang.when(gift.created_at),
            }
        )
    return out


def _send_page(
    request: Request,
    user: SignedIn,
    session: Session,
    registry: AssetRegistry,
    settings: Settings,
    form: GiftForm,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    available = forms.available_by_asset(session=session, user=user.user)
    assets = registry.all()
    sent = gifts.sent_by(session=session, sender_id=user.user.id, limit=LIST_MAX)
    return page(
        request,
        "lite/gifts.html",
        {
            "assets": [a.code for a in assets],
            "available": {
                a.code: lang.amount(max(available.get(a.code, 0), 0), a.scale) for a in assets
            },
            "form": form,
            "error": error,
            "key": forms.new_key(),
            "shares_max": settings.gifts.shares_max,
            "ttl_hours": settings.gifts.ttl_hours,
            "gifts": _rows(lang, registry, sent),
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )


@router.get("/gifts", response_class=HTMLResponse)
def gifts_page(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    settings: SettingsDep,
) -> HTMLResponse:
    form = GiftForm(asset=forms.default_asset(user.user), shares="3")
    return _send_page(request, user, session, registry, settings, form)


@router.post("/gifts", response_class=HTMLResponse)
def send_gift(
    body: Annotated[GiftForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Send once per render of the form; then to the gift's page (POST, redirect, GET)."""
    lang = lang_of(request)

    def refused(message: str, error: DomainError) -> HTMLResponse:
        return _send_page(
            request,
            user,
            session,
            registry,
            settings,
            body,
            error=message,
            status_code=error.status,
        )

    try:
        money = forms.read_money(registry, body.amount, body.asset)
    except InvalidAmount as error:
        return refused(
            forms.amount_refusal(lang, error, body.amount, registry.get(body.asset)), error
        )
    except DomainError as error:
        return refused(forms.refusal(lang, error, registry, settings), error)
    shares_text = body.shares.strip()
    shape: DomainError | None = None
    if not shares_text.isdigit() or len(shares_text) > len(str(settings.gifts.shares_max)):
        shape = ValidationFailed("shares", code="invalid_shares")
    elif body.split not in (Split.EQUAL.value, Split.RANDOM.value):
        shape = ValidationFailed("split", code="invalid_split")
    if shape is not None:
        return refused(_refusal(lang, shape, registry, settings), shape)
    shares = int(shares_text)
    values = {
        "asset": money.asset.code,
        "amount": body.amount.strip(),
        "shares": shares,
        "split": body.split,
    }
    try:
        gift, _ = create_once(
            session=session,
            settings=settings,
            user=user.user,
            operation=f"{request.method} {request.url.path}",
            key=body.idempotency_key,
            request=values,
            amount=money,
            shares=shares,
            split=Split(body.split),
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        return refused(_refusal(lang, error, registry, settings), error)
    return core.secure_headers(RedirectResponse(f"{PATH}/{gift.id}", status_code=303))


def _claim_page(
    request: Request,
    user: SignedIn | None,
    code: str,
    *,
    error: str | None = None,
    received: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    back = f"{CLAIM_PATH}?{urlencode({'code': code})}" if code else CLAIM_PATH
    return page(
        request,
        "lite/gift_claim.html",
        {
            "code": code,
            "error": error,
            "received": received,
            "sign_in": "/app/signin?" + urlencode({"next": back}),
            "signed_out": user is None,
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )


@router.get("/gifts/claim", response_class=HTMLResponse)
def claim_page(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """The claim form, the code from the link; signed out: a sign-in link that comes back."""
    return _claim_page(request, optional_user(request, session), code)


@router.post("/gifts/claim", response_class=HTMLResponse)
def claim(
    body: Annotated[ClaimForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """Claim a share; the page says what arrived, or why not."""
    lang = lang_of(request)
    try:
        claimed = gifts.claim(
            session=session,
            claimer=user.user,
            code=body.claim_code,
            settings=settings,
            now=utcnow(),
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        return _claim_page(
            request,
            user,
            body.claim_code,
            error=_refusal(lang, error, registry, settings),
            status_code=error.status,
        )
    amount = lang.amount(claimed.amount_minor, registry.get(claimed.asset).scale)
    return _claim_page(request, user, "", received=f"{amount} {claimed.asset}")


@router.get("/gifts/{gift_id}", response_class=HTMLResponse)
def gift_page(
    gift_id: RowIdPath,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """One of the user's gifts: its link and code to share, and its shares."""
    lang = lang_of(request)
    gift = gifts.get_for_sender(session=session, sender_id=user.user.id, gift_id=gift_id)
    code = gifts.claim_code_of(gift, settings.auth.vault)
    scale = registry.get(gift.asset).scale
    parts = [
        {
            "amount": lang.amount(share.amount_minor, scale),
            "claimed": share.claimed_by is not None,
            "when": lang.when(share.claimed_at) if share.claimed_at else "",
        }
        for share in gifts.shares_of(session=session, gift_id=gift.id)
    ]
    return page(
        request,
        "lite/gift.html",
        {
            "gift": _rows(lang, registry, [gift])[0],
            "code": code,
            "link": gifts.claim_link(settings.mail.public_url, code),
            "expires": lang.when(gift.expires_at),
            "refunded": lang.amount(gift.refunded_minor, scale),
            "split": gift.split,
            "parts": parts,
        },
        user=user,
        current=PATH,
    )
