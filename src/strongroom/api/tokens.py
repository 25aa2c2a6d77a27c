"""Virtual card numbers (R-TOKEN-1): ``/v1/tokens``. Thin: ``strongroom.tokens.service``
decides, the request's unit of work commits. Wallet users only (``wallet_users_only``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.api.paycodes import REFUSED, WalletUserDep
from strongroom.identity.models import User
from strongroom.tokens import service
from strongroom.tokens.models import VirtualCard
from strongroom.tokens.schemas import (
    TOKEN_ID_PATTERN,
    TokenCreatedOut,
    TokenDetailOut,
    TokenIn,
    TokenOut,
    TokensOut,
)

router = APIRouter(prefix="/v1/tokens", tags=["virtual cards"])
TokenIdPath = Annotated[str, Path(pattern=TOKEN_ID_PATTERN, max_length=32)]
ONE: dict[int | str, dict[str, Any]] = {
    404: {"description": "`token_not_found` (none of the user's cards, or deleted)"}
}


def token_out(card: VirtualCard) -> TokenOut:
    return TokenOut(
        id=card.id,
        last4=card.last4,
        merchant_id=card.merchant_id,
        status="suspended" if card.status == service.SUSPENDED else "active",
        created_at=card.created_at,
    )


def _with_number(card: VirtualCard, number: str) -> dict[str, Any]:
    return {**token_out(card).model_dump(mode="json"), "number": number}


@router.post(
    "",
    status_code=201,
    response_model=TokenCreatedOut,
    responses={
        **REFUSED,
        422: {"description": "`invalid_merchant_id`, `tokens_limit`, `validation_error`"},
    },
)
def create_token(
    request: Request,
    user: WalletUserDep,
    session: SessionDep,
    settings: SettingsDep,
    body: TokenIn | None = None,
) -> JSONResponse:
    """A new virtual card number (16 digits, Luhn-valid, from the configured BIN range),
    optionally restricted to one merchant."""
    created = service.create(
        session=session,
        user=user,
        settings=settings,
        merchant_id=body.merchant_id if body is not None else None,
        origin=origin_of(request),
    )
    return JSONResponse(_with_number(created.card, created.number), status_code=201)


@router.get("", responses=REFUSED)
def list_tokens(user: WalletUserDep, session: SessionDep) -> TokensOut:
    """The user's virtual cards (last four digits only), newest first; deleted ones are gone."""
    return TokensOut(items=[token_out(c) for c in service.cards_of(session=session, user=user)])


@router.get("/{token_id}", response_model=TokenDetailOut, responses={**REFUSED, **ONE})
def get_token(
    token_id: TokenIdPath, user: WalletUserDep, session: SessionDep, settings: SettingsDep
) -> JSONResponse:
    """One virtual card with its whole number (its owner only)."""
    card = service.card_of(session=session, user=user, token_id=token_id)
    return JSONResponse(_with_number(card, service.number_of(card, settings)))


def _status(token_id: str, status: str, request: Request, user: User, session: Session) -> TokenOut:
    card = service.set_status(
        session=session, user=user, token_id=token_id, status=status, origin=origin_of(request)
    )
    return token_out(card)


@router.post("/{token_id}/suspend", responses={**REFUSED, **ONE})
def suspend_token(
    token_id: TokenIdPath,
    request: Request,
    user: WalletUserDep,
    session: SessionDep,
) -> TokenOut:
    """Suspend a card: charges with it are refused until it is resumed."""
    return _status(token_id, service.SUSPENDED, request, user, session)


@router.post("/{token_id}/resume", responses={**REFUSED, **ONE})
def resume_token(
    token_id: TokenIdPath,
    request: Request,
    user: WalletUserDep,
    session: SessionDep,
) -> TokenOut:
    """Make a suspended card chargeable again."""
    return _status(token_id, service.ACTIVE, request, user, session)


@router.delete(
    "/{token_id}", status_code=204, response_class=Response, responses={**REFUSED, **ONE}
)
def delete_token(
    token_id: TokenIdPath, request: Request, user: WalletUserDep, session: SessionDep
) -> Response:
    """Delete a card for good: its number is refused and never issued again."""
    origin = origin_of(request)
    service.set_status(
        session=session, user=user, token_id=token_id, status=service.DELETED, origin=origin
    )
    return Response(status_code=204)
