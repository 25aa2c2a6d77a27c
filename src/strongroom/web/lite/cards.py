"""Virtual card numbers (issue #13, R-TOKEN-1): ``/app/cards``, over the service that
``/v1/tokens`` uses (``strongroom.tokens.service``).

- **The list**: each card's last four digits, status (active or suspended) and the one shop it
  is restricted to, if any (by name when the id is a shop of ours); deleted cards are gone.
- **Create** (``POST /app/cards``, an optional shop id): the answer is the only place the whole
  number appears (``no-store``), as ``POST /v1/tokens`` returns it once; the list shows the last
  four only. A card is created per submit, as the API creates one per call.
- **Suspend, resume, delete** (``POST /app/cards/{suspend,resume,delete}`` with the card's id
  in the form): then back to the list (POST, redirect, GET). A card that is not one of the
  user's (another user's, a deleted one, a made-up id) is the 404 page, as the API's
  ``token_not_found``: nothing says whether it exists.

Operator accounts hold no wallet and get the 403 page (the API's ``wallet_users_only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.errors import DomainError, NotFound
from strongroom.identity.models import User
from strongroom.merchants import portal as merchant_portal
from strongroom.settings import Settings
from strongroom.tokens import service as tokens
from strongroom.tokens.models import VirtualCard
from strongroom.web import core
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/cards"
CARD_ID_MAX_CHARS: Final = 32
STATUSES: Final = {tokens.ACTIVE: N_("Active"), tokens.SUSPENDED: N_("Suspended")}
REFUSALS: Final = {
    "invalid_merchant_id": N_(
        "A shop id has 1 to %(max)s letters, digits, '_', '-' or '.', and no spaces."
    ),
    "tokens_limit": N_("You have %(max)s virtual cards, the most there can be: delete one first."),
    "bin_range_exhausted": N_("No new card number can be made right now. Try again later."),
}
FAILED: Final = N_("That did not work. Check what you entered and try again.")


class CreateForm(BaseModel):
    merchant_id: str = Field(default="", max_length=200)


class CardForm(BaseModel):
    card_id: str = Field(default="", max_length=200)


@dataclass(frozen=True, slots=True)
class CardRow:
    id: str
    last4: str
    status: str  # "active" or "suspended"
    status_label: str
    merchant: str | None  # the shop's name, or its id when it is not one of ours
    created: str


def _wallet_user(user: SignedIn) -> User:
    return forms.wallet_user(user.user)


def _rows(request: Request, session: Session, user: User) -> list[CardRow]:
    lang = lang_of(request)
    cards = tokens.cards_of(session=session, user=user)
    restricted = {card.merchant_id for card in cards if card.merchant_id is not None}
    names = merchant_portal.names(session=session, merchant_ids=restricted)
    return [
        CardRow(
            id=card.id,
            last4=card.last4,
            status=card.status,
            status_label=lang.gettext(STATUSES.get(card.status, STATUSES[tokens.ACTIVE])),
            merchant=None
            if card.merchant_id is None
            else names.get(card.merchant_id, card.merchant_id),
            created=lang.when(card.created_at),
        )
        for card in cards
    ]


def _page(
    request: Request,
    session: Session,
    user: SignedIn,
    settings: Settings,
    *,
    form: CreateForm | None = None,
    created: tuple[VirtualCard, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    new = None
    if created is not None:
        card, number = created
        new = {"id": card.id, "number": " ".join(number[i : i + 4] for i in range(0, 16, 4))}
    context = {
        "cards": _rows(request, session, user.user),
        "form": form or CreateForm(),
        "created": new,
        "error": error,
        "max": settings.virtual_cards.tokens_per_user_max,
        "merchant_id_max": settings.virtual_cards.merchant_id_max_chars,
    }
    return page(
        request, "lite/cards.html", context, user=user, current=PATH, status_code=status_code
    )


@router.get("/cards", response_class=HTMLResponse)
def cards_page(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    _wallet_user(user)
    return _page(request, session, user, settings)


@router.post("/cards", response_class=HTMLResponse)
def create(
    body: Annotated[CreateForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """A new card; its whole number is in this answer only."""
    owner = _wallet_user(user)
    merchant_id = body.merchant_id.strip() or None
    try:
        made = tokens.create(
            session=session,
            user=owner,
            settings=settings,
            merchant_id=merchant_id,
            origin=origin_of(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        text = lang_of(request).gettext(REFUSALS.get(error.code, FAILED))
        message = text % {
            "max": settings.virtual_cards.merchant_id_max_chars
            if error.code == "invalid_merchant_id"
            else settings.virtual_cards.tokens_per_user_max
        }
        return _page(
            request, session, user, settings, form=body, error=message, status_code=error.status
        )
    return _page(request, session, user, settings, created=(made.card, made.number))


def _set_status(
    body: CardForm, user: SignedIn, request: Request, session: Session, status: str
) -> Response:
    owner = _wallet_user(user)
    card_id = body.card_id.strip()
    if not card_id or len(card_id) > CARD_ID_MAX_CHARS:
        raise NotFound("no such virtual card", code="token_not_found")
    tokens.set_status(
        session=session, user=owner, token_id=card_id, status=status, origin=origin_of(request)
    )
    return core.secure_headers(RedirectResponse(PATH, status_code=303))


CardFormDep = Annotated[CardForm, Form()]


@router.post("/cards/suspend")
def suspend(
    body: CardFormDep, user: SignedInDep, request: Request, session: SessionDep
) -> Response:
    """Charges with the card are refused until it is resumed."""
    return _set_status(body, user, request, session, tokens.SUSPENDED)


@router.post("/cards/resume")
def resume(body: CardFormDep, user: SignedInDep, request: Request, session: SessionDep) -> Response:
    return _set_status(body, user, request, session, tokens.ACTIVE)


@router.post("/cards/delete")
def delete(body: CardFormDep, user: SignedInDep, request: Request, session: SessionDep) -> Response:
    """For good: the number is refused from now on and never issued again."""
    return _set_status(body, user, request, session, tokens.DELETED)
