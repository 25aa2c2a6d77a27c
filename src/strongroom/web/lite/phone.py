"""The user's phone number (issue #12 item 4, R-P2P-1): set it so that others can pay it, or
remove it, as ``PUT``/``DELETE /v1/me/phone`` do (``identity.service.set_phone``): any common
format, one without a country code read in the user's region, stored in E.164, one account per
number. Not verified by SMS (out of scope), so not a security setting: no step-up, no freeze."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from strongroom import db
from strongroom.api import SessionDep
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.web import cookies
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.lite.security import DONE_COOKIE
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/phone"
PhoneField = Annotated[str, Form(max_length=forms.FIELD_MAX_CHARS)]
DONE: Final = {
    "set": N_("Your phone number was saved: others can now send you money by it."),
    "removed": N_("Your phone number was removed."),
}
REFUSALS: Final = {
    "invalid_phone": N_(
        "This is not a valid phone number: give it with its country code, for example "
        "+852 5123 4567."
    ),
    "phone_taken": N_("Another account has this phone number."),
}


def _page(
    request: Request,
    user: SignedIn,
    *,
    typed: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    done = cookies.get(request, DONE_COOKIE, path=PATH)
    response = page(
        request,
        "lite/phone.html",
        {
            "phone": user.user.phone,
            "typed": typed if typed is not None else (user.user.phone or ""),
            "error": error,
            "done": lang.gettext(DONE[done]) if done in DONE else None,
        },
        user=user,
        current="/app/send",
        status_code=status_code,
    )
    cookies.drop(response, request, DONE_COOKIE, path=PATH)
    return response


def _done(request: Request, done: str) -> Response:
    return forms.done_redirect(request, PATH, DONE_COOKIE, done)


@router.get("/phone", response_class=HTMLResponse)
def phone_page(user: SignedInDep, request: Request, session: SessionDep) -> HTMLResponse:
    return _page(request, user)


@router.post("/phone", response_class=HTMLResponse)
def set_phone(
    phone: PhoneField, user: SignedInDep, request: Request, session: SessionDep
) -> Response:
    try:
        identity.set_phone(
            session=session, user=user.user, phone=phone, origin=forms.origin(request)
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = lang_of(request).gettext(REFUSALS.get(error.code, forms.UNKNOWN_REFUSAL))
        return _page(request, user, typed=phone, error=message, status_code=error.status)
    return _done(request, "set")


@router.post("/phone/remove", response_class=HTMLResponse)
def remove_phone(user: SignedInDep, request: Request, session: SessionDep) -> Response:
    identity.remove_phone(session=session, user=user.user, origin=forms.origin(request))
    return _done(request, "removed")
