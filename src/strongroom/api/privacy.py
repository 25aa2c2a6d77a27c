"""Personal data (issue #11 item 7): the user's data export and the erasure of their account.
Thin: ``privacy.service`` decides (its docstring is the policy); the request's unit of work
commits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel

from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.api.identity import STEP_UP_REFUSALS, AuthDep, step_up
from strongroom.identity.schemas import StepUpIn
from strongroom.kyc import service as kyc
from strongroom.privacy import service

router = APIRouter(prefix="/v1", tags=["privacy"])

ZIP: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "the ZIP: `data.json` and the KYC documents decrypted under `kyc/`",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    },
    **STEP_UP_REFUSALS,
    413: {"description": "`export_too_large` (`details.section`): contact support"},
    500: {"description": "`document_unreadable`: a stored document does not open"},
}


class ErasureOut(BaseModel):
    user_id: str
    erased_at: datetime
    retained_until: datetime


def _export(
    request: Request, session: SessionDep, settings: SettingsDep, auth: AuthDep, body: StepUpIn
) -> Response:
    proof = step_up(request, session, settings, auth, body)
    made = service.export(
        session=session,
        user=auth[0],
        proof=proof,
        vault=kyc.vault_for(settings.kyc, settings.auth.vault),
        settings=settings.privacy,
        origin=origin_of(request),
    )
    return Response(
        content=made.content,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{made.filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/me/data-export", response_class=Response, responses=ZIP)
def data_export(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    auth: AuthDep,
    x_password: Annotated[str | None, Header(max_length=1024)] = None,
    x_otp: Annotated[str | None, Header(max_length=32)] = None,
) -> Response:
    """Everything held about you, as one ZIP (synchronous, bounded by
    `privacy.export_max_rows` and `privacy.export_max_bytes`). The step-up (R-SEC-8) in the
    headers `X-Password` (and `X-OTP` when 2FA is on), since a GET has no body; audited and
    emailed."""
    return _export(request, session, settings, auth, StepUpIn(password=x_password, otp=x_otp))


@router.post("/me/data-export", response_class=Response, responses=ZIP)
def data_export_post(
    body: StepUpIn, request: Request, session: SessionDep, settings: SettingsDep, auth: AuthDep
) -> Response:
    """The same export with the step-up in a JSON body (`{password, otp?}`)."""
    return _export(request, session, settings, auth, body)


@router.post(
    "/me/erasure",
    responses={
        **STEP_UP_REFUSALS,
        403: {
            "description": "`reauthentication_required`: send `password` (and `otp`); "
            "`operator_account`: operators are closed by an admin"
        },
        409: {
            "description": "`balance_not_zero` (`details.assets`, `details.pending_topups`): "
            "withdraw or spend the money first"
        },
    },
)
def erasure(
    body: StepUpIn, request: Request, session: SessionDep, settings: SettingsDep, auth: AuthDep
) -> ErasureOut:
    """Close the account and erase its personal data (the policy: `privacy.service`): every
    session is signed out, the financial records stay pseudonymised for the retention period."""
    proof = step_up(request, session, settings, auth, body)
    done = service.erase(
        session=session,
        user=auth[0],
        proof=proof,
        store=kyc.vault_for(settings.kyc, settings.auth.vault).store,
        settings=settings.privacy,
    )
    return ErasureOut(
        user_id=done.user_id, erased_at=done.erased_at, retained_until=done.retained_until
    )
