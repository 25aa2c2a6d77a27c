"""Limits: the user's KYC tier and what each kind of operation may still do (R-LIMIT-1,
R-KYC-6), read from ``limits.service.overview`` exactly as ``GET /v1/limits`` shows it, with
amounts formatted for the user's language."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from strongroom.api import SessionDep, SettingsDep
from strongroom.limits import service as limits
from strongroom.limits.rules import BTC, BTC_DECIMALS, CURRENCY_DECIMALS
from strongroom.money import parse_amount
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/limits"

TIERS: Final = {
    "unverified": N_("Unverified"),
    "primary": N_("Primary"),
    "advanced": N_("Advanced"),
    "institutional": N_("Institutional"),
}
OPERATIONS: Final = {
    "topup": N_("Top up"),
    "p2p_send": N_("Send to people"),
    "merchant_payment": N_("Pay merchants"),
    "fiat_withdrawal": N_("Withdraw to a bank"),
    "crypto_withdrawal": N_("Withdraw crypto"),
    "gift": N_("Send gifts"),
    "conversion": N_("Convert"),
}


@dataclass(frozen=True, slots=True)
class LimitView:
    operation: str
    name: str
    currency: str
    per_transaction: str | None
    day_left: str | None
    year_left: str | None
    count_left: int | None
    balance_left: str | None
    needs_verification: bool


def tier_name(lang: Lang, tier: str) -> str:
    return lang.gettext(TIERS.get(tier, TIERS["unverified"]))


def _shown(lang: Lang, value: str | None, currency: str) -> str | None:
    if value is None:
        return None
    scale = BTC_DECIMALS if currency == BTC else CURRENCY_DECIMALS
    return lang.amount(parse_amount(value, scale, allow_zero=True), scale)


@router.get("/limits", response_class=HTMLResponse)
def limits_page(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    lang = lang_of(request)
    rows = [
        LimitView(
            operation=row.operation.value,
            name=lang.gettext(OPERATIONS[row.operation.value]),
            currency=row.currency,
            per_transaction=_shown(lang, row.per_transaction, row.currency),
            day_left=_shown(lang, row.day_left, row.currency),
            year_left=_shown(lang, row.year_left, row.currency),
            count_left=row.count_left,
            balance_left=_shown(lang, row.balance_left, row.currency),
            needs_verification=row.required_tier is not None,
        )
        for row in limits.overview(session=session, user=user.user, settings=settings)
    ]
    return page(
        request,
        "lite/limits.html",
        {"tier": tier_name(lang, user.user.kyc_tier), "rows": rows},
        user=user,
        current=PATH,
    )
