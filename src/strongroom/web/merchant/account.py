"""Signing in to the merchant portal, choosing a merchant, signing out.

The portal's people are ordinary user accounts that are members of a merchant
(``merchants.models.MerchantMember``, given by an operator or by the merchant's owner), so the
sign-in is the shared two-step flow (``web.signin.SignInFlow``, ``operators_only=False``) with
its own paths: the pending 2FA step's cookie is bound to ``/merchant/signin``, so neither the
Lite app's nor the console's completes it. After signing in, ``/merchant/choose`` lists the
merchants the person works for (one: straight to it); the choice is a cookie with the
merchant's id, checked against the membership on every request."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strongroom.api import SessionDep, SettingsDep
from strongroom.errors import DomainError, Forbidden, Unauthorized
from strongroom.identity.schemas import LoginIn
from strongroom.merchants import portal
from strongroom.web import cookies, core, sessions, signin
from strongroom.web.i18n import N_, Lang
from strongroom.web.merchant.layout import (
    CHOOSE,
    HOME,
    MERCHANT_COOKIE,
    MERCHANT_COOKIE_MAX_AGE_S,
    PREFIX,
    ROLE_NAMES,
    SIGN_IN,
    page,
)
from strongroom.web.signin import SignInFlow

router = APIRouter(prefix=PREFIX)
CODE_PATH: Final = "/merchant/signin/code"
OtpField = Annotated[str, Form(max_length=32)]
MerchantField = Annotated[str, Form(min_length=1, max_length=18, pattern=r"^m_[0-9a-f]{16}$")]
REFUSALS: Final = {
    "invalid_credentials": N_("The email or password is wrong."),
    "account_locked": N_(
        "Too many wrong attempts: signing in with this email is locked until %(until)s."
    ),
    "invalid_otp": N_("That code is not right. Enter the current code from your app."),
    "otp_required": N_("Enter the 6-digit code from your authenticator app."),
    "two_factor_blocked": N_("Too many wrong codes: try again after %(until)s."),
    "rate_limited": N_("Too many attempts: try again after %(until)s."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")


def refusal_text(lang: Lang, error: DomainError) -> str:
    return signin.refusal_text(lang, error, REFUSALS, UNKNOWN_REFUSAL)


def _form(request: Request, email: str, error: str | None, status_code: int = 200) -> HTMLResponse:
    return page(
        request,
        "merchant/signin.html",
        {"email": email, "error": error, "query": FLOW.query(request)},
        member=None,
        status_code=status_code,
    )


def _code_form(request: Request, error: str | None, status_code: int = 200) -> HTMLResponse:
    return page(
        request,
        "merchant/signin_code.html",
        {"error": error, "query": FLOW.query(request)},
        member=None,
        status_code=status_code,
    )


FLOW: Final = SignInFlow(
    home=CHOOSE,
    sign_in=SIGN_IN,
    code_path=CODE_PATH,
    next_prefixes=(PREFIX + "/",),
    operators_only=False,
    refusal=refusal_text,
    password_form=_form,
    code_form=_code_form,
)
"""Signing in to the portal: any account (the portal then asks for a membership)."""


@router.get("", include_in_schema=False)
def portal_root() -> Response:
    return core.secure_headers(RedirectResponse(HOME, status_code=308))


@router.get("/signin", response_class=HTMLResponse)
def sign_in_page(request: Request, session: SessionDep) -> Response:
    try:
        sessions.signed_in(request, session)
    except Unauthorized:
        return _form(request, "", None)
    return core.secure_headers(RedirectResponse(FLOW.after_sign_in(request), status_code=303))


@router.post("/signin", response_class=HTMLResponse)
def sign_in(
    body: Annotated[LoginIn, Form()], request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    return FLOW.password_step(body, request, session, settings)


@router.get("/signin/code", response_class=HTMLResponse)
def code_page(request: Request, session: SessionDep) -> Response:
    return FLOW.code_page(request, session)


@router.post("/signin/code", response_class=HTMLResponse)
def sign_in_with_code(
    otp: OtpField, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    return FLOW.code_step(otp, request, session, settings)


@router.post("/signout")
def sign_out(request: Request, session: SessionDep) -> Response:
    response = FLOW.sign_out(request, session)
    cookies.drop(response, request, MERCHANT_COOKIE)
    return response


@router.get("/choose", response_class=HTMLResponse)
def choose_page(request: Request, session: SessionDep) -> Response:
    """The merchants this person works for; with exactly one, straight to it."""
    signed_in = sessions.signed_in(request, session)
    found = portal.memberships(session=session, user=signed_in.user)
    if not found:
        raise Forbidden("you do not work for a merchant", code="not_a_merchant_member")
    if len(found) == 1:
        response = RedirectResponse(HOME, status_code=303)
        cookies.put(
            response,
            request,
            MERCHANT_COOKIE,
            found[0].merchant.id,
            max_age_s=MERCHANT_COOKIE_MAX_AGE_S,
        )
        return core.secure_headers(response)
    return page(
        request,
        "merchant/choose.html",
        {"memberships": found, "role_names": ROLE_NAMES, "email": signed_in.user.email},
        member=None,
    )


@router.post("/choose")
def choose(merchant_id: MerchantField, request: Request, session: SessionDep) -> Response:
    """Work for one of one's merchants (another's: 403, as the API's ``X-Merchant-Id``)."""
    signed_in = sessions.signed_in(request, session)
    ids = {m.merchant.id for m in portal.memberships(session=session, user=signed_in.user)}
    if merchant_id not in ids:
        raise Forbidden("you do not work for this merchant", code="not_a_merchant_member")
    response = RedirectResponse(HOME, status_code=303)
    cookies.put(
        response, request, MERCHANT_COOKIE, merchant_id, max_age_s=MERCHANT_COOKIE_MAX_AGE_S
    )
    return core.secure_headers(response)
