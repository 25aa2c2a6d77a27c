"""The Lite app at ``/app``: the users' mobile-first, installable web wallet (issue #5).

``router`` mounts every screen module (each a router with ``prefix=PREFIX``, ``/app``) with
CSRF protection on every unsafe request (``csrf.protect``). A new screen is a module here with
its own ``router`` (added to ``SCREENS``), its templates under ``templates/lite/`` and its
strings in the catalogs; see ``web/README.md``.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Depends

from strongroom.web import csrf
from strongroom.web.lite import (
    account,
    addresses,
    bank_accounts,
    buy,
    cards,
    convert,
    gifts,
    history,
    home,
    kyc,
    kyc_institutional,
    language,
    limits,
    password_reset,
    pay,
    pay_emv,
    phone,
    privacy,
    pwa,
    security,
    security_2fa,
    security_apc,
    send,
    topup,
    topup_pending,
    verify_email,
    withdraw,
)

SCREENS: Final = (
    home.router,
    topup.router,
    topup_pending.router,
    send.router,
    pay.router,
    pay_emv.router,
    cards.router,
    convert.router,
    buy.router,
    phone.router,
    gifts.router,
    history.router,
    kyc.router,
    bank_accounts.router,
    withdraw.router,
    addresses.router,
    limits.router,
    kyc_institutional.router,
    security.router,
    privacy.router,
    security_2fa.router,
    security_apc.router,
    account.router,
    verify_email.router,
    password_reset.router,
    language.router,
    pwa.router,
)

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect)])
for screen in SCREENS:
    router.include_router(screen)
