"""The operator console at ``/console`` (issue #5, part 2): sign in with mandatory 2FA, a
dashboard, users, the audit log, the email outbox and, in the demo, the inbox.

``router`` mounts every screen module (each a router with ``prefix=PREFIX``, ``/console``) with
CSRF protection on every unsafe request (``csrf.protect``), exactly as the Lite app does. Each
page depends on ``access.ConsoleGuard(screen)``: an operator's session with 2FA on, a role
allowed the screen (the table in ``access.py``), and one audit event per request. A new screen
is a module here with its own ``router`` (added to ``SCREENS``), a row in ``access.ACCESS``,
its templates under ``templates/console/`` and its strings in the ``console`` catalogs; see
``web/README.md``.

Importing this package registers ``/console`` with ``web.errors``, so errors under it are pages
in the console's layout (with the operator's navigation, and the console's own words for the
console's refusals).
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Depends

from strongroom.web import csrf, errors
from strongroom.web.console import (
    access,
    account,
    adjustments,
    audit_log,
    dashboard,
    funding,
    fx_rates,
    kyc,
    layout,
    mail,
    merchants,
    payouts,
    users,
)
from strongroom.web.i18n import N_

SCREENS: Final = (
    account.router,
    dashboard.router,
    users.router,
    adjustments.router,
    kyc.router,
    fx_rates.router,
    funding.router,
    payouts.router,
    merchants.router,
    audit_log.router,
    mail.router,
)

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect)])
for screen in SCREENS:
    router.include_router(screen)

ERROR_TEXTS: Final = {
    access.NotAnOperator.code: (
        N_("Operators only"),
        N_("This is the operator console. Sign in with an operator account."),
    ),
    access.ScreenForbidden.code: (
        N_("Not for your role"),
        N_("Your operator role may not use this screen. Ask an administrator if you need it."),
    ),
    "two_factor_required": (
        N_("Turn on two-step verification"),
        N_(
            "Operators must use two-step verification. Turn it on in the app's security "
            "settings first, then sign in here."
        ),
    ),
}
errors.PARTS[layout.PREFIX] = errors.Part(
    sign_in=layout.SIGN_IN,
    home=layout.HOME,
    layout="console/layout.html",
    context=layout.error_context,
    texts=ERROR_TEXTS,
)
