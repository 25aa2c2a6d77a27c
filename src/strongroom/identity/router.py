from __future__ import annotations

from fastapi import APIRouter, Request

from strongroom.api import SessionDep, SettingsDep, UserDep
from strongroom.identity import service
from strongroom.identity.schemas import LoginIn, LoginOut, MeOut, RegisterIn, RegisterOut

router = APIRouter(prefix="/v1", tags=["identity"])


@router.post("/auth/register", status_code=201)
def register(body: RegisterIn, session: SessionDep, settings: SettingsDep) -> RegisterOut:
    user = service.register(session=session, email=body.email, password=body.password,
                            name=body.name, region=body.region, settings=settings.auth)
    session.commit()
    return RegisterOut(user_id=user.id)


@router.post("/auth/login")
def login(body: LoginIn, request: Request, session: SessionDep, settings: SettingsDep) -> LoginOut:
    issued = service.login(session=session, email=body.email, password=body.password,
                           settings=settings.auth,
                           ip=request.client.host if request.client else None,
                           user_agent=request.headers.get("user-agent"))
    session.commit()
    return LoginOut(token=issued.token, expires_at=issued.expires_at)


@router.get("/me")
def me(user: UserDep) -> MeOut:
    return MeOut(user_id=user.id, email=user.email, name=user.name, region=user.region,
                 kyc_tier=user.kyc_tier, two_factor=False, anti_phishing_code_set=False,
                 operator_role=user.operator_role)
