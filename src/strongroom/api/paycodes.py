"""Payment-code devices and codes (R-CODE-1): ``/v1/devices``, ``/v1/payment-codes``. Thin:
``strongroom.paycodes.service`` decides, the request's unit of work commits. These routes
serve wallet users: an operator account has no wallet here and is refused
(``wallet_users_only``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from strongroom.api import SessionDep, SettingsDep, UserDep, origin_of
from strongroom.errors import Forbidden
from strongroom.identity.models import User
from strongroom.paycodes import service
from strongroom.paycodes.models import Device
from strongroom.paycodes.schemas import (
    DEVICE_ID_PATTERN,
    DeviceCreatedOut,
    DeviceIn,
    DeviceOut,
    DevicesOut,
    PaymentCodeIn,
    PaymentCodeOut,
)

router = APIRouter(prefix="/v1", tags=["payment codes"])


async def wallet_user(user: UserDep) -> User:
    """A wallet user: operators hold no wallet, so these routes refuse them (403)."""
    if user.operator_role is not None:
        raise Forbidden(
            "this is for wallet users: operator accounts hold no wallet",
            code="wallet_users_only",
        )
    return user


WalletUserDep = Annotated[User, Depends(wallet_user)]
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, max_length=32)]

REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token (`unauthorized`, `invalid_token`, `token_expired`)"},
    403: {"description": "an operator account (`wallet_users_only`)"},
}
ONE: dict[int | str, dict[str, Any]] = {
    404: {"description": "`device_not_found` (none of the user's devices)"}
}


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceCreatedOut,
    responses={
        **REFUSED,
        422: {"description": "`invalid_device_name`, `devices_limit`, `validation_error`"},
    },
)
def register_device(
    body: DeviceIn,
    request: Request,
    user: WalletUserDep,
    session: SessionDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Register a device that shows payment codes: its secret is in this answer only."""
    codes = settings.payment_codes
    registered = service.register_device(
        session=session,
        user=user,
        name=body.name,
        settings=codes,
        keyring=settings.auth.vault,
        origin=origin_of(request),
    )
    out = DeviceCreatedOut(
        device_id=registered.device.id,
        secret=registered.secret,
        name=registered.device.name,
        issuer_id=codes.issuer_id,
        locator=f"{registered.device.locator:07d}",
        step_s=codes.step_s,
        window_s=codes.window_s,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


def device_out(device: Device) -> DeviceOut:
    return DeviceOut(
        device_id=device.id,
        name=device.name,
        status="revoked" if device.revoked_at is not None else "active",
        server_held=device.server_held,
        created_at=device.created_at,
        last_used_at=device.last_used_at,
        revoked_at=device.revoked_at,
    )


@router.get("/devices", responses=REFUSED)
def list_devices(user: WalletUserDep, session: SessionDep) -> DevicesOut:
    """The user's devices, newest first, the revoked ones too (at most
    ``payment_codes.devices_per_user_max`` active ones)."""
    return DevicesOut(items=[device_out(d) for d in service.devices_of(session=session, user=user)])


@router.delete(
    "/devices/{device_id}",
    status_code=204,
    response_class=Response,
    responses={**REFUSED, **ONE},
)
def revoke_device(
    device_id: DeviceIdPath, request: Request, user: WalletUserDep, session: SessionDep
) -> Response:
    """Revoke a device: none of its codes is accepted from now on (again: no change)."""
    service.revoke_device(
        session=session, user=user, device_id=device_id, origin=origin_of(request)
    )
    return Response(status_code=204)


@router.post(
    "/payment-codes",
    status_code=201,
    response_model=PaymentCodeOut,
    responses={
        **REFUSED,
        **ONE,
        422: {"description": "`device_revoked`, `devices_limit`, `validation_error`"},
    },
)
def issue_code(
    user: WalletUserDep,
    session: SessionDep,
    settings: SettingsDep,
    body: PaymentCodeIn | None = None,
) -> JSONResponse:
    """The current 24-digit code of a device (the user's own default device, created on first
    use, when none is named): valid until ``expires_at``, accepted once."""
    issued = service.issue_code(
        session=session,
        user=user,
        settings=settings.payment_codes,
        keyring=settings.auth.vault,
        device_id=body.device_id if body is not None else None,
    )
    out = PaymentCodeOut(code=issued.code, expires_at=issued.expires_at, device_id=issued.device_id)
    return JSONResponse(out.model_dump(mode="json"), status_code=201)
