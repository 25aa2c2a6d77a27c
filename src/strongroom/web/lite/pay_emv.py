"""Pay a shop's QR code (issue #13, R-CODE-2, R-XB-1): ``/app/pay/emv``.

1. **Scan or paste** (``GET /app/pay/emv``): the payload of an EMVCo merchant-presented code,
   typed or pasted, or read by the camera (``static/web/scan.js``: the browser's
   ``BarcodeDetector`` over ``getUserMedia`` where both exist; the field alone elsewhere).
2. **Check** (``POST /app/pay/emv``): the server reads the code exactly as paying it will
   (``merchants.charges.read_qr``: the CRC, the merchant, a dynamic code's amount and whether it
   was paid already) and writes nothing. A static code asks for the amount first; then the
   confirmation shows the shop's name and city, the amount in its currency and, when the shop's
   currency is not the user's (R-XB-1), what the user pays in theirs at the live rate now
   (``charges.payer_cost``; the charge prices it again when it moves).
3. **Pay** (``POST /app/pay/emv/confirm``): as ``POST /v1/pay/emv`` does
   (``charges.pay_qr`` in ``movements.run_once``), once per idempotency key (a hidden field,
   new on every confirmation), so a double submit pays once and lands on the same receipt. The
   API asks for no step-up on this route, so neither does the page.

Every refusal is shown in the page in the user's language (``REFUSALS``; the shared ones of
``lite.forms``), and a refused payment moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.emv import EmvError
from strongroom.errors import DomainError, InvalidAmount
from strongroom.merchants import charges
from strongroom.merchants import service as merchants
from strongroom.money import AssetRegistry, Money
from strongroom.movements import service as movements
from strongroom.movements.idempotency import Outcome
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.history import receipt_path
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/pay/emv"
NAV_PATH: Final = "/app/pay"
"""The navigation entry it is under: paying, the other way round."""
PAYLOAD_MAX_CHARS: Final = 512
"""As ``POST /v1/pay/emv``'s ``payload``."""
UNREADABLE: Final = N_(
    "This is not a payment code we can read. Check that you pasted all of it, or scan it again."
)
REFUSALS: Final = {
    "emv_crc_mismatch": N_(
        "This code is damaged: its check digits do not match. Scan it again or ask the shop for "
        "a new one."
    ),
    "emv_crc_missing": N_(
        "This code is incomplete: its check digits are missing. Scan it again or ask the shop "
        "for a new one."
    ),
    "emv_unknown_merchant": N_("This code is not from a shop that takes Strongroom."),
    "emv_unknown_code": N_("The shop does not know this code. Ask the shop for a new one."),
    "emv_amount_invalid": N_(
        "The amount in this code was changed. Do not pay it: ask the shop for a new code."
    ),
    "emv_currency_invalid": N_(
        "This code's currency is not the shop's. Ask the shop for a new code."
    ),
    "qr_used": N_("This code has been paid already. Ask the shop for a new one."),
    "merchant_suspended": N_("This shop cannot take payments at the moment."),
    "amount_required": N_("Enter the amount to pay."),
    "amount_mismatch": N_("This code is for another amount. Scan it again."),
    "asset_not_accepted": N_("This shop does not take this currency."),
    "rate_unavailable": N_(
        "There is no exchange rate for this payment right now. Try again in a moment."
    ),
    "wallet_users_only": N_("An operator account has no wallet to pay from."),
}


class CodeForm(BaseModel):
    """What the user pasted (bounded before anything reads it, P5) and, for a static code, the
    amount they typed."""

    payload: str = Field(default="", max_length=PAYLOAD_MAX_CHARS + 64)
    amount: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    idempotency_key: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)

    def cleaned(self) -> CodeForm:
        """Whitespace around a pasted code or amount is not part of it (a payload has none)."""
        return self.model_copy(
            update={"payload": self.payload.strip(), "amount": self.amount.strip()}
        )


FormDep = Annotated[CodeForm, Form()]


@dataclass(frozen=True, slots=True)
class Shown:
    """The code as the confirmation shows it."""

    merchant: str
    city: str
    currency: str
    dynamic: bool
    amount: str | None  # in the shop's currency, formatted; None: to be typed
    pays: str | None  # cross-border: what the user pays in their currency, formatted
    pays_asset: str | None


def refusal(lang: Lang, error: DomainError, registry: AssetRegistry, settings: Settings) -> str:
    """The translated sentence for a refusal of reading or paying a code."""
    own = REFUSALS.get(error.code)
    if own is None and error.code.startswith("emv_"):
        own = UNREADABLE
    if own is not None:
        return lang.gettext(own)
    return forms.refusal(lang, error, registry, settings)


def _form(
    request: Request, user: SignedIn, values: CodeForm, error: str | None, status_code: int = 200
) -> HTMLResponse:
    context = {"form": values, "error": error, "payload_max": PAYLOAD_MAX_CHARS}
    return page(
        request, "lite/pay_emv.html", context, user=user, current=NAV_PATH, status_code=status_code
    )


@router.get("/pay/emv", response_class=HTMLResponse)
def scan_page(user: SignedInDep, request: Request) -> HTMLResponse:
    forms.wallet_user(user.user)
    return _form(request, user, CodeForm(), None)


def _read(
    session: Session,
    user: SignedIn,
    values: CodeForm,
    registry: AssetRegistry,
    settings: Settings,
    lang: Lang,
) -> tuple[Shown, Money | None]:
    """Read the code (and the typed amount of a static one), as paying it will; raises the
    refusal. The money is None while a static code's amount is still to be typed."""
    if not values.payload or len(values.payload) > PAYLOAD_MAX_CHARS:
        raise EmvError("no payload, or too long", code="emv_format_invalid")
    read = charges.read_qr(
        session=session, payload=values.payload, settings=settings, assets=registry
    )
    currency = merchants.currency_of(read.merchant)
    money = read.amount
    if money is None and values.amount:
        money = forms.read_money(registry, values.amount, currency)
    pays: Money | None = None
    if money is not None:
        cost = charges.payer_cost(session=session, user=user.user, amount=money, assets=registry)
        pays = cost if cost.asset.code != currency else None
    shown = Shown(
        merchant=read.merchant.name,
        city=read.merchant.city,
        currency=currency,
        dynamic=read.dynamic is not None,
        amount=None if money is None else lang.amount(money.amount_minor, money.asset.scale),
        pays=None if pays is None else lang.amount(pays.amount_minor, pays.asset.scale),
        pays_asset=None if pays is None else pays.asset.code,
    )
    return shown, money


def _refused(
    request: Request,
    session: Session,
    user: SignedIn,
    values: CodeForm,
    error: DomainError,
    registry: AssetRegistry,
    settings: Settings,
) -> HTMLResponse:
    """The reason, where the user can act on it: a static code's amount form again (with what
    they typed) when the code itself is fine, else the paste form with the code as pasted.
    What the service kept stays, nothing else."""
    error = db.settle_refusal(session, error)
    lang = lang_of(request)
    static = _static_code(session, user, values, registry, settings, lang)
    if isinstance(error, InvalidAmount):
        currency = static.currency if static is not None else forms.default_asset(user.user)
        message = forms.amount_refusal(lang, error, values.amount, registry.get(currency))
    else:
        message = refusal(lang, error, registry, settings)
    if static is None:
        return _form(request, user, values, message, status_code=error.status)
    context = {"form": values, "code": static, "key": None, "error": message}
    return page(
        request,
        "lite/pay_emv_confirm.html",
        context,
        user=user,
        current=NAV_PATH,
        status_code=error.status,
    )


def _static_code(
    session: Session,
    user: SignedIn,
    values: CodeForm,
    registry: AssetRegistry,
    settings: Settings,
    lang: Lang,
) -> Shown | None:
    """The code as shown before its amount is typed, if it is a static code that reads fine."""
    try:
        shown, _money = _read(
            session, user, values.model_copy(update={"amount": ""}), registry, settings, lang
        )
    except DomainError:
        return None
    return None if shown.dynamic else shown


@router.post("/pay/emv", response_class=HTMLResponse)
def check(
    body: FormDep,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """Step 1 → 2: read the code; ask for a static code's amount, or confirm (nothing is
    written)."""
    forms.wallet_user(user.user)
    values = body.cleaned()
    lang = lang_of(request)
    try:
        shown, money = _read(session, user, values, registry, settings, lang)
    except DomainError as error:
        return _refused(request, session, user, values, error, registry, settings)
    key = forms.new_key() if money is not None else None
    context: dict[str, Any] = {"form": values, "code": shown, "key": key, "error": None}
    return page(request, "lite/pay_emv_confirm.html", context, user=user, current=NAV_PATH)


@router.post("/pay/emv/confirm", response_class=HTMLResponse)
def confirm(
    body: FormDep,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> Response:
    """Pay once per confirmation (as ``POST /v1/pay/emv``); then to the receipt (POST,
    redirect, GET)."""
    values = body.cleaned()
    amount = values.amount or None

    def work(current: Session) -> Outcome:
        row = charges.pay_qr(
            session=current,
            user=user.user,
            payload=values.payload,
            amount=amount,
            settings=settings,
            assets=registry,
        )
        return Outcome(id=row.id, status=row.status)

    try:
        if not values.payload or len(values.payload) > PAYLOAD_MAX_CHARS:
            raise EmvError("no payload, or too long", code="emv_format_invalid")
        outcome = movements.run_once(
            session=session,
            settings=settings,
            actor_id=user.user.id,
            operation=f"{request.method} {request.url.path}",
            key=values.idempotency_key,
            request={"payload": values.payload, "amount": amount},
            work=work,
        )
    except DomainError as error:
        return _refused(request, session, user, values, error, registry, settings)
    receipt = receipt_path(charges.payer_transfer_id(outcome.id))
    return core.secure_headers(RedirectResponse(receipt, status_code=303))
