"""Send money to another user, by email, phone number or user id, in two steps (issue #5,
issue #12, R-P2P-1); both sides get a receipt email when it commits (``payments.receipts``).

1. **The form** (``/app/send``): recipient's email or phone number (or user id), asset, amount,
   an optional note. Sending it checks everything the API would refuse, by running
   ``payments.service.check_send`` (the recipient, same region, not oneself, the note, the
   available funds); nothing is written.
2. **The confirmation** shows the recipient's name, masked (``C** T** M**``), and the amount,
   with a new idempotency key. "Send" (``/app/send/confirm``) moves the money as
   ``POST /v1/transfers`` does (see ``lite.forms``): once per key, whatever the number of clicks
   or refreshes. "Change" goes back to the form with the same values.

Refusals say what the API says and no more: an unknown email or number reads "no Strongroom
user with that email, phone number or user id" (the API's ``recipient_not_found``); a wallet in
another region reads so (``cross_region_transfer``).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.errors import DomainError, InvalidAmount
from strongroom.identity import names
from strongroom.money import AssetRegistry, Money
from strongroom.movements.batcher import Prepared
from strongroom.payments import receipts
from strongroom.payments import service as payments
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.history import receipt_path
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/send"


class SendForm(BaseModel):
    """What the user typed (bounded before anything looks at it, P5; shown again as typed)."""

    to: str = Field(default="", max_length=254)
    asset: str = Field(default="", max_length=16)
    amount: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    note: str = Field(default="", max_length=1000)
    idempotency_key: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)

    def cleaned(self) -> SendForm:
        return self.model_copy(update={"to": self.to.strip(), "amount": self.amount.strip()})

    @property
    def note_or_none(self) -> str | None:
        return self.note.strip() or None


FormDep = Annotated[SendForm, Form()]


def _form(
    request: Request,
    user: SignedIn,
    session: Session,
    registry: AssetRegistry,
    settings: Settings,
    values: SendForm,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    assets = registry.all()
    lang = lang_of(request)
    held = forms.available_by_asset(session=session, user=user.user)
    available = {asset.code: lang.amount(held.get(asset.code, 0), asset.scale) for asset in assets}
    return page(
        request,
        "lite/send.html",
        {
            "form": values,
            "assets": [asset.code for asset in assets],
            "available": available,
            "error": error,
            "note_max": settings.ledger.note_max_chars,
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )


@router.get("/send", response_class=HTMLResponse)
def send_page(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    values = SendForm(asset=forms.default_asset(user.user))
    return _form(request, user, session, registry, settings, values)


def _read(
    registry: AssetRegistry, values: SendForm, request: Request
) -> tuple[Money | None, str | None]:
    """The amount, or the sentence saying what is wrong with it or the asset."""
    lang = lang_of(request)
    try:
        return forms.read_money(registry, values.amount, values.asset), None
    except InvalidAmount as error:
        return None, forms.amount_refusal(lang, error, values.amount, registry.get(values.asset))
    except DomainError as error:
        return None, lang.gettext(forms.REFUSALS.get(error.code, forms.UNKNOWN_REFUSAL))


def _check(
    session: Session, user: SignedIn, settings: Settings, values: SendForm, money: Money
) -> str:
    """Everything ``POST /v1/transfers`` would refuse, without writing (``payments.check_send``):
    the recipient's name masked (``identity.names.masked``: each word's first letter, so a
    sender recognises someone they know, but no one reads the full name behind any email
    they type), or the refusal raised."""
    checked = payments.check_send(
        session=session,
        sender=user.user,
        to=values.to,
        amount=money,
        note=values.note_or_none,
        limits=settings.ledger,
        settings=settings,
    )
    return names.masked(checked.recipient.name)


@router.post("/send", response_class=HTMLResponse)
def review(
    body: FormDep,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """Step 1 → 2: check the transfer, then ask to confirm it (nothing is written)."""
    values = body.cleaned()
    money, problem = _read(registry, values, request)
    if money is None:
        return _form(
            request, user, session, registry, settings, values, error=problem, status_code=422
        )
    try:
        name = _check(session, user, settings, values, money)
    except DomainError as error:
        message = forms.refusal(lang_of(request), error, registry, settings)
        return _form(
            request,
            user,
            session,
            registry,
            settings,
            values,
            error=message,
            status_code=error.status,
        )
    shown = lang_of(request).amount(money.amount_minor, money.asset.scale)
    return page(
        request,
        "lite/send_confirm.html",
        {"form": values, "name": name, "amount": shown, "key": forms.new_key()},
        user=user,
        current=PATH,
    )


@router.post("/send/edit", response_class=HTMLResponse)
def edit(
    body: FormDep,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """Back from the confirmation to the form, with what was typed."""
    return _form(request, user, session, registry, settings, body)


@router.post("/send/confirm", response_class=HTMLResponse)
def confirm(
    body: FormDep,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Send once per confirmation; then to the receipt (POST, redirect, GET)."""
    values = body.cleaned()
    money, problem = _read(registry, values, request)
    if money is None:
        return _form(
            request, user, session, registry, settings, values, error=problem, status_code=422
        )
    note_kept = values.note_or_none
    fields = {
        "to": values.to,
        "asset": money.asset.code,
        "amount": values.amount,
        "note": note_kept,
    }
    try:
        done = forms.submit(
            request=request,
            session=session,
            settings=settings,
            user=user.user,
            key=values.idempotency_key,
            body=fields,
            prepare=lambda prepared: Prepared(
                *receipts.prepare_send(
                    session=prepared,
                    sender=user.user,
                    to=values.to,
                    amount=money,
                    note=note_kept,
                    limits=settings.ledger,
                    settings=settings,
                )
            ),
        )
    except DomainError as error:
        error = db.settle_refusal(session, error)
        message = forms.refusal(lang_of(request), error, registry, settings)
        return _form(
            request,
            user,
            session,
            registry,
            settings,
            values,
            error=message,
            status_code=error.status,
        )
    return core.secure_headers(RedirectResponse(receipt_path(done.transfer_id), status_code=303))
