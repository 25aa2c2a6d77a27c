"""Top up (issue #5; channels of issue #12): a channel, an asset and an amount, once per form.

The channels are the installation's (``funding.connectors``): the sandbox confirms at once;
``fps``, ``card`` and ``store_cash`` (and the sandbox's failure paths) open a pending top-up and
send the browser to its page (``lite.topup_pending``: the reference, the card session, the
store barcode with its countdown, the status).

The handler does what ``POST /v1/topups`` does (``funding.service.prepare_topup`` through the
ledger's group-commit batcher, see ``lite.forms``), with the idempotency key of the form's
render: sending the form twice, or refreshing after sending it, tops up once and shows the
same receipt. A bad amount or an unknown asset is refused in the form before anything is
written; an amount over the sandbox's per-request cap is refused with the cap.

The sandbox exists only where the settings enable it (never in production, R-SEC-11): without
any channel the screen says that top-up is unavailable and offers no form, and a POST is
refused (422) with the same sentence, nothing written.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.api import funding as funding_api
from strongroom.errors import DomainError, InvalidAmount
from strongroom.funding import connectors
from strongroom.funding import service as funding
from strongroom.funding.connectors import SANDBOX_LIMIT
from strongroom.money import AssetRegistry, parse_amount
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.history import receipt_path
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/topup"
CHANNEL: Final = "sandbox"
"""The channel the form picks when the installation offers it."""
CHANNEL_LABELS: Final = {
    "sandbox": N_("Sandbox (test money)"),
    "fps": N_("Bank transfer (FPS)"),
    "card": N_("Debit or credit card"),
    "store_cash": N_("Cash at a convenience store"),
}
UNKNOWN_CHANNEL: Final = N_("Choose a top-up channel from the list.")
UNAVAILABLE: Final = N_(
    "Top-up is not available here: this installation has no top-up channel yet."
)
OVER_CAP: Final = N_("The sandbox adds at most %(amount)s %(asset)s at a time.")
UNAVAILABLE_STATUS: Final = 422


class TopupForm(BaseModel):
    """The form's fields, as typed (bounded before anything looks at them, P5)."""

    asset: str = Field(default="", max_length=16)
    amount: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    channel: str = Field(default=CHANNEL, max_length=32)
    idempotency_key: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)


def available(settings: Settings) -> bool:
    """Whether this installation offers any top-up channel."""
    return bool(channels(settings))


def channels(settings: Settings) -> list[str]:
    """The channels offered, the sandbox first, in the order of ``CHANNEL_LABELS``."""
    offered = set(connectors.channel_names(settings))
    return [name for name in CHANNEL_LABELS if name in offered]


def _form(
    request: Request,
    user: SignedIn,
    registry: AssetRegistry,
    *,
    asset: str,
    amount: str,
    error: str | None = None,
    status_code: int = 200,
    offered: bool = True,
    channel: str = CHANNEL,
    settings: Settings | None = None,
) -> HTMLResponse:
    """The form with a new idempotency key: each render is one top-up at most; without a
    channel (``offered`` False), the sentence saying top-up is unavailable instead."""
    lang = lang_of(request)
    names = channels(settings) if settings is not None else []
    return page(
        request,
        "lite/topup.html",
        {
            "assets": [a.code for a in registry.all()],
            "asset": asset,
            "amount": amount,
            "error": error,
            "key": forms.new_key(),
            "available": offered,
            "unavailable": lang.gettext(UNAVAILABLE),
            "channels": [(name, lang.gettext(CHANNEL_LABELS[name])) for name in names],
            "channel": channel if channel in names else (names[0] if names else ""),
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )


@router.get("/topup", response_class=HTMLResponse)
def topup_page(
    user: SignedInDep, request: Request, registry: AssetsDep, settings: SettingsDep
) -> HTMLResponse:
    asset = forms.default_asset(user.user)
    return _form(
        request,
        user,
        registry,
        asset=asset,
        amount="",
        offered=available(settings),
        settings=settings,
    )


def _refusal(lang: Lang, error: DomainError, registry: AssetRegistry, settings: Settings) -> str:
    """The sentence for a refusal of the top-up: the sandbox's cap with its amount, else the
    money forms' sentences."""
    if error.code == "limit_exceeded" and error.details.get("limit") == SANDBOX_LIMIT:
        asset = registry.get(error.details.get("asset"))
        cap_minor = parse_amount(str(error.details.get("limit_amount")), asset.scale)
        return lang.gettext(OVER_CAP) % {
            "amount": lang.amount(cap_minor, asset.scale),
            "asset": asset.code,
        }
    return forms.refusal(lang, error, registry, settings)


@router.post("/topup", response_class=HTMLResponse)
def topup(
    body: Annotated[TopupForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Top up once per form; then to the receipt (POST, redirect, GET)."""
    lang = lang_of(request)
    asset, amount = body.asset, body.amount
    if not available(settings):  # nothing to offer: nothing is read or written
        return _form(
            request,
            user,
            registry,
            asset=forms.default_asset(user.user),
            amount="",
            status_code=UNAVAILABLE_STATUS,
            offered=False,
            settings=settings,
        )
    channel = body.channel

    def refused(message: str, error: DomainError, shown_asset: str = asset) -> HTMLResponse:
        """The form again, with what was typed and the refusal (nothing was written)."""
        return _form(
            request,
            user,
            registry,
            asset=shown_asset,
            amount=amount,
            error=message,
            status_code=error.status,
            channel=channel,
            settings=settings,
        )

    if channel not in channels(settings):
        refusal = connectors.unknown_channel(channel, settings)
        return refused(lang.gettext(UNKNOWN_CHANNEL), refusal)

    try:
        money = forms.read_money(registry, amount, asset)
    except InvalidAmount as error:
        return refused(forms.amount_refusal(lang, error, amount, registry.get(asset)), error)
    except DomainError as error:  # an unknown asset: the form shows the default one
        message = forms.refusal(lang, error, registry, settings)
        return refused(message, error, forms.default_asset(user.user))
    values = {"asset": money.asset.code, "amount": amount.strip(), "channel": channel}
    if not funding_api.confirms_at_once(channel, money, settings):
        try:
            record = funding_api.request_pending(
                session=session,
                settings=settings,
                user=user.user,
                key=body.idempotency_key,
                body=values,
                amount=money,
                channel=channel,
                operation=f"POST {PATH}",
            )
        except DomainError as error:
            error = db.settle_refusal(session, error)
            return refused(_refusal(lang, error, registry, settings), error)
        return core.secure_headers(RedirectResponse(f"{PATH}/{record.id}", status_code=303))
    try:
        done = forms.submit(
            request=request,
            session=session,
            settings=settings,
            user=user.user,
            key=body.idempotency_key,
            body=values,
            prepare=lambda prepared: funding.prepare_topup(
                session=prepared, user=user.user, amount=money, channel=channel, settings=settings
            ),
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        return refused(_refusal(lang, error, registry, settings), error)
    return core.secure_headers(RedirectResponse(receipt_path(done.transfer_id), status_code=303))
