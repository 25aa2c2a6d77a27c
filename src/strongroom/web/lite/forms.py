"""What the Lite app's money forms share (issue #5): the idempotency key of a form, amounts
read with clear refusals, submission exactly as the HTTP API submits, and refusal texts.

- **Idempotency**: every render of a form that moves money carries a new random key in a hidden
  field (``idempotency_key``). The handler submits through ``movements.service.submit``, the
  same path as ``POST /v1/topups`` and ``POST /v1/transfers`` (the group-commit batcher, one
  transfer per key): a second submit of the same form, a refresh of its POST or a double click
  finds the stored result and answers with the same receipt, so money moves once. The scope is
  the user and ``POST <path>``, so a key of the web form never answers for the API or another
  form. The same key with other values is refused (``idempotency_key_reused``).
- **Amounts** are decimal strings parsed by the asset registry (``strongroom.money``): more
  decimals than the asset's scale, zero, a sign, a separator or an unknown asset is refused
  before anything is looked up or written, with a sentence saying which.
- **Refusals** are shown by ``code`` (``REFUSALS``), translated; a refusal says no more than the
  API's error does.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom.api import origin_of
from strongroom.errors import DomainError, Forbidden, InvalidAmount
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.money import Asset, AssetRegistry, Money, parse_amount
from strongroom.movements import service as movements
from strongroom.movements.batcher import Prepared
from strongroom.settings import Settings
from strongroom.web import cookies, core
from strongroom.web.i18n import N_, Lang

KEY_FIELD: Final = "idempotency_key"
KEY_BYTES: Final = 24
FIELD_MAX_CHARS: Final = 100
"""Bounds on what a form field may hold before it is even looked at (P5)."""
SIGNED_DECIMAL: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")

REFUSALS: Final = {
    "unknown_asset": N_("Choose an asset from the list."),
    "insufficient_funds": N_("Not enough money: you have %(available)s %(asset)s available."),
    "recipient_not_found": N_(
        "There is no Strongroom user with that email, phone number or user id."
    ),
    "same_account": N_("You cannot send money to yourself."),
    "cross_region_transfer": N_(
        "This person's wallet is in another region: transfers between regions are not possible."
    ),
    "invalid_note": N_("The note is too long: at most %(max)s characters."),
    "idempotency_key_reused": N_(
        "This form was already sent with other values. Check your history before trying again."
    ),
    "idempotency_key_in_progress": N_(
        "This is still being processed. Check your history in a moment."
    ),
    "idempotency_key_required": N_("This form has expired. Check the details and send it again."),
    "invalid_idempotency_key": N_("This form has expired. Check the details and send it again."),
    "busy": N_("We are busy right now. Wait a moment and try again."),
    "email_unverified": N_(
        "Confirm your email address first: open the link we sent you (Home has a new one)."
    ),
    "funds_locked": N_(
        "%(locked)s %(asset)s of your balance is locked after a purchase until %(when)s."
    ),
    "kyc_required": N_("Verify your identity first: this needs a verified account."),
}
LIMIT_REFUSALS: Final = {
    "per_transaction": N_(
        "One transaction may be at most %(limit)s %(currency)s at your verification level."
    ),
    "day": N_("This is over your limit for 24 hours: %(left)s %(currency)s left."),
    "year": N_("This is over your limit for 365 days: %(left)s %(currency)s left."),
    "max_balance": N_(
        "Your wallets may hold at most %(limit)s %(currency)s: %(left)s %(currency)s more fits."
    ),
    "withdrawals_per_day": N_("You have made all %(limit)s withdrawals allowed in 24 hours."),
    "crypto_withdrawals_24h": N_(
        "This is over your crypto withdrawal limit for 24 hours: %(left)s BTC-equivalent left."
    ),
}
LIMIT_FREES_AT: Final = N_("More is allowed from %(when)s.")
AMOUNT_REFUSALS: Final = {
    "decimals": N_("%(asset)s amounts have at most %(scale)s decimal places."),
    "whole": N_("%(asset)s amounts are whole numbers."),
    "not_positive": N_("Enter an amount greater than zero."),
    "format": N_("Enter the amount with digits and a decimal point only, for example 100.50."),
    "too_large": N_("That amount is too large."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


origin = origin_of
"""Where a request came from, for the audit log (the API's ``origin_of``)."""


def new_key() -> str:
    """A fresh idempotency key for one render of a money form (URL-safe, 32 characters)."""
    return secrets.token_urlsafe(KEY_BYTES)


def read_money(registry: AssetRegistry, amount: str, asset: str) -> Money:
    """The form's amount in minor units; ``InvalidAmount`` / ``UnknownAsset`` as the API."""
    return registry.money(amount.strip(), asset)


def amount_refusal(lang: Lang, error: InvalidAmount, amount: str, asset: Asset) -> str:
    """Which rule an amount broke, in a sentence: too many decimals, not positive, not a plain
    number, or too large."""
    text = amount.strip()
    if "scale" in error.details:
        reason = "decimals" if asset.scale > 0 else "whole"
    elif SIGNED_DECIMAL.fullmatch(text) is None:
        reason = "format"
    elif text.startswith("-") or text.lstrip("+").replace(".", "").strip("0") == "":
        reason = "not_positive"
    elif text.startswith("+"):
        reason = "format"
    else:
        reason = "too_large"
    return lang.gettext(AMOUNT_REFUSALS[reason]) % {"asset": asset.code, "scale": asset.scale}


def refusal(lang: Lang, error: DomainError, registry: AssetRegistry, settings: Settings) -> str:
    """The translated sentence for a refusal of the funding, payments or ledger services."""
    text = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL))
    if error.code == "insufficient_funds":
        asset = registry.get(error.details.get("asset"))
        available = int(error.details.get("available_minor", "0"))
        return text % {"available": lang.amount(available, asset.scale), "asset": asset.code}
    if error.code == "invalid_note":
        return text % {"max": settings.ledger.note_max_chars}
    if error.code == "funds_locked":
        asset = registry.get(error.details.get("asset"))
        locked = parse_amount(str(error.details.get("locked")), asset.scale, allow_zero=True)
        return text % {
            "locked": lang.amount(locked, asset.scale),
            "asset": asset.code,
            "when": _when(lang, error.details.get("unlocks_at")),
        }
    if error.code == "limit_exceeded" and error.details.get("limit") in LIMIT_REFUSALS:
        return _limit_refusal(lang, error.details, settings)
    return text


def _limit_refusal(lang: Lang, details: dict[str, Any], settings: Settings) -> str:
    """A tier limit's refusal (``limit_exceeded``): which limit, what is left, when it frees."""
    limit = str(details["limit"])
    btc = limit == "crypto_withdrawals_24h"
    scale = 8 if btc else 2

    def shown(key: str) -> str:
        value = str(details.get(key))
        if limit == "withdrawals_per_day":
            return value
        return lang.amount(parse_amount(value, scale, allow_zero=True), scale)

    text = lang.gettext(LIMIT_REFUSALS[limit]) % {
        "limit": shown("limit_amount"),
        "left": shown("left"),
        "currency": "BTC" if btc else settings.limits.currency,
    }
    if details.get("frees_at"):
        text += " " + lang.gettext(LIMIT_FREES_AT) % {"when": _when(lang, details["frees_at"])}
    return text


def _when(lang: Lang, iso: object) -> str:
    return lang.when(datetime.fromisoformat(str(iso)))


@dataclass(frozen=True, slots=True)
class Submitted:
    """A money form's transfer: done now, or found done by an earlier submit of the form."""

    transfer_id: str


def submit(
    *,
    request: Request,
    session: Session,
    settings: Settings,
    user: User,
    key: str,
    body: dict[str, Any],
    prepare: Callable[[Session], TransferSpec | Prepared],
) -> Submitted:
    """Move the money once per ``key`` through the money-movement service, as the API does;
    the scope is the user and ``POST <form path>``."""
    outcome = movements.submit(
        session=session,
        batcher=request.app.state.batcher,
        settings=settings,
        actor_id=user.id,
        operation=f"{request.method} {request.url.path}",
        key=key,
        request=body,
        prepare=prepare,
    )
    return Submitted(transfer_id=outcome.id)


def available_by_asset(*, session: Session, user: User) -> dict[str, int]:
    """What the user may spend now in each asset they hold: the ledger's ``Balance`` (total -
    pending debits - locked). Reads only: no account is created."""
    return {
        held.asset: held.available_minor
        for held in ledger.wallet_balances(session=session, user_id=user.id)
    }


def default_asset(user: User) -> str:
    """The currency of the user's region (R-REGION-1)."""
    return "CNY" if user.region == "CN" else "HKD"


def wallet_user(user: User) -> User:
    """``user``, who holds a wallet: an operator account has none and gets the 403 page, as the
    API's ``wallet_users_only`` (the shop-code payment and the virtual cards ask for it)."""
    if user.operator_role is not None:
        raise Forbidden("operator accounts hold no wallet", code="wallet_users_only")
    return user


def done_redirect(request: Request, path: str, cookie: str, done: str) -> Response:
    """Back to ``path`` (303) with what was done in a one-minute cookie the page reads once
    (the address book, bank accounts, the phone number)."""
    response = core.secure_headers(RedirectResponse(path, status_code=303))
    cookies.put(response, request, cookie, done, max_age_s=60, path=path)
    return response
