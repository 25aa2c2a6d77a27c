"""The merchant portal at ``/merchant`` (issue #13, item 7): charges, refunds, exports, the
till (web POS) with spoken announcements, daily settlements, batch payouts from a CSV,
terminal keys, the webhook, people and roles.

``router`` mounts every screen module with CSRF protection on every unsafe request
(``csrf.protect``), as the Lite app and the console do. Pages depend on
``layout.MemberGuard(capability)``: a signed-in person who works for the merchant, with a role
holding the capability (``merchants.roles``). Importing this package registers ``/merchant``
with ``web.errors``: errors under it are pages in the portal's layout."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Depends

from strongroom.web import csrf, errors
from strongroom.web.i18n import N_
from strongroom.web.merchant import account, charges, layout, payouts, pos, settings, settlements

SCREENS: Final = (
    account.router,
    charges.router,
    pos.router,
    settlements.router,
    payouts.router,
    settings.router,
)

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect)])
for screen in SCREENS:
    router.include_router(screen)

ERROR_TEXTS: Final = {
    "merchant_role_forbidden": (
        N_("Not for your role"),
        N_("Your role at this merchant may not use this page. Ask an owner if you need it."),
    ),
    "not_a_merchant_member": (
        N_("No merchant"),
        N_("This account does not work for a merchant. Ask the merchant's owner to add you."),
    ),
    "merchant_suspended": (
        N_("This shop is suspended"),
        N_(
            "The operator suspended this shop: its portal and terminals are stopped. Money it "
            "already earned is still paid to its bank account. Contact the operator."
        ),
    ),
    layout.ChooseMerchant.code: (
        N_("Choose a merchant"),
        N_("You work for several merchants: choose the one to work for."),
    ),
}
errors.PARTS[layout.PREFIX] = errors.Part(
    sign_in=layout.SIGN_IN,
    home=layout.HOME,
    layout="merchant/layout.html",
    context=layout.error_context,
    texts=ERROR_TEXTS,
)
