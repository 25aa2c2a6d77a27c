"""Linked bank accounts (issue #12 item 2, R-FUND-2): the list (numbers masked), linking one in
the user's own verified legal name and removing one, each after the step-up (R-SEC-8: the
password again, the 2FA code when it is on), exactly as ``/v1/bank-accounts`` does through
``banking.service``. Removing is a security change (R-SEC-5): the page then shows the
withdrawal freeze. A refusal is settled (``db.settle_refusal``: a wrong password still counts)
and shown in the form, with what was typed (never the password)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, SettingsDep
from strongroom.banking import service as banking
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity import two_factor
from strongroom.settings import Settings
from strongroom.web import cookies
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.lite.security import DONE_COOKIE, signed_out, step_up, step_up_refusal
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/bank-accounts"
DONE: Final = {
    "linked": N_("The bank account was linked."),
    "removed": N_(
        "The bank account was removed. For your safety, withdrawals are paused for 24 hours."
    ),
}
REFUSALS: Final = {
    "kyc_required": N_("Verify your identity first: bank accounts must be in your legal name."),
    "holder_name_mismatch": N_(
        "The account holder must be you: enter your legal name as on your verified identity "
        "document."
    ),
    "invalid_holder_name": N_("Enter the account holder's name."),
    "invalid_bank_code": N_("The bank code is %(min)s to %(max)s digits."),
    "invalid_account_number": N_("The account number is %(min)s to %(max)s digits."),
    "bank_account_exists": N_("This bank account is linked already."),
    "too_many_bank_accounts": N_("You can link at most %(max)s bank accounts: remove one first."),
    "bank_account_not_found": N_("That bank account is not linked."),
    "email_unverified": N_("Confirm your email address first."),
}
AccountIdPath = Annotated[int, Path(ge=1, lt=db.ROW_ID_LIMIT)]


class LinkForm(BaseModel):
    """What the user typed (bounded before anything looks at it, P5)."""

    holder_name: str = Field(default="", max_length=banking.HOLDER_NAME_MAX_CHARS)
    bank_code: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    account_number: str = Field(default="", max_length=forms.FIELD_MAX_CHARS)
    password: str = Field(default="", max_length=1024)
    otp: str = Field(default="", max_length=32)


class StepUpForm(BaseModel):
    password: str = Field(default="", max_length=1024)
    otp: str = Field(default="", max_length=32)


def refusal(lang: Lang, error: DomainError) -> str:
    if error.code in REFUSALS:
        return lang.gettext(REFUSALS[error.code]) % {
            "min": error.details.get("min_digits", ""),
            "max": error.details.get("max_digits", error.details.get("max", "")),
        }
    return step_up_refusal(lang, error)


def _page(
    request: Request,
    user: SignedIn,
    session: Session,
    settings: Settings,
    *,
    form: LinkForm | None = None,
    error: str | None = None,
    remove_error: tuple[int, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    linked = banking.list_linked(session=session, user=user.user)
    frozen = identity.withdrawals_frozen_until(session=session, user_id=user.user.id)
    done = cookies.get(request, DONE_COOKIE, path=PATH)
    response = page(
        request,
        "lite/bank_accounts.html",
        {
            "accounts": [
                {
                    "id": account.id,
                    "holder_name": account.holder_name,
                    "bank_code": account.bank_code,
                    "number": banking.masked(account.account_number),
                    "linked_at": lang.when(account.created_at),
                }
                for account in linked
            ],
            "max": settings.banking.accounts_max,
            "full": len(linked) >= settings.banking.accounts_max,
            "verified": banking.verified_legal_name(session, user.user) is not None,
            "two_factor": two_factor.is_enabled(user.user),
            "form": (form or LinkForm()).model_copy(update={"password": "", "otp": ""}),
            "error": error,
            "remove_error": remove_error,
            "done": lang.gettext(DONE[done]) if done in DONE else None,
            "frozen_until": lang.when(frozen) if frozen is not None else None,
        },
        user=user,
        current=PATH,
        status_code=status_code,
    )
    cookies.drop(response, request, DONE_COOKIE, path=PATH)
    return response


def _done(request: Request, done: str) -> Response:
    return forms.done_redirect(request, PATH, DONE_COOKIE, done)


@router.get("/bank-accounts", response_class=HTMLResponse)
def bank_accounts_page(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    return _page(request, user, session, settings)


@router.post("/bank-accounts", response_class=HTMLResponse)
def link(
    body: Annotated[LinkForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Check the account, then the step-up, then link it (as ``POST /v1/bank-accounts``)."""
    try:
        banking.check_new(
            session=session,
            user=user.user,
            holder_name=body.holder_name,
            bank_code=body.bank_code,
            account_number=body.account_number,
            settings=settings.banking,
        )
        proof = step_up(request, session, user, settings, body.password, body.otp)
        banking.link(
            session=session,
            user=user.user,
            holder_name=body.holder_name,
            bank_code=body.bank_code,
            account_number=body.account_number,
            proof=proof,
            settings=settings.banking,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request, user, session, settings, form=body, error=message, status_code=error.status
        )
    return _done(request, "linked")


@router.post("/bank-accounts/{account_id}/remove", response_class=HTMLResponse)
def remove(
    account_id: AccountIdPath,
    body: Annotated[StepUpForm, Form()],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Remove a linked account after the step-up: a security change (freeze and email)."""
    try:
        banking.get_linked(session=session, user=user.user, account_id=account_id)
        proof = step_up(request, session, user, settings, body.password, body.otp)
        banking.remove(
            session=session,
            user=user.user,
            account_id=account_id,
            proof=proof,
            settings=settings.auth,
            origin=forms.origin(request),
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        message = refusal(lang_of(request), error)
        return signed_out(request, error) or _page(
            request,
            user,
            session,
            settings,
            remove_error=(account_id, message),
            status_code=error.status,
        )
    return _done(request, "removed")
