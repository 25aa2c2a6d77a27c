"""Request dependencies shared by the routers: the database session, the signed-in user, the
operator check, amounts and idempotent execution. The request owns the transaction: a router
commits once its work is done; anything raised rolls it back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from strongroom import idempotency
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.money import AssetRegistry, Money
from strongroom.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def current_user(session: SessionDep, token: Annotated[str | None, Depends(bearer_token)]) -> User:
    return identity.authenticate(session=session, token=token)


UserDep = Annotated[User, Depends(current_user)]


def operator(user: UserDep) -> User:
    identity.require_operator(user)
    return user


OperatorDep = Annotated[User, Depends(operator)]


def assets(request: Request) -> AssetRegistry:
    registry: AssetRegistry = request.app.state.assets
    return registry


AssetsDep = Annotated[AssetRegistry, Depends(assets)]


def money(registry: AssetRegistry, amount: object, asset: object) -> Money:
    return registry.money(amount, asset)


def run_idempotent(
    *,
    request: Request,
    session: Session,
    settings: Settings,
    user: User,
    key: str | None,
    body: dict[str, Any],
    work: Callable[[], tuple[int, dict[str, Any]]],
) -> JSONResponse:
    """Run money-moving ``work`` once per Idempotency-Key (SPEC P3), then commit."""
    checked = idempotency.check_key(key, max_chars=settings.idempotency.key_max_chars)
    scope = f"{user.id}:{request.method} {request.url.path}"
    fingerprint = idempotency.request_hash(request.method, request.url.path, body)
    status, payload = idempotency.run_once(
        session=session, scope=scope, key=checked, fingerprint=fingerprint, work=work
    )
    session.commit()
    return JSONResponse(payload, status_code=status)


IdempotencyKeyHeader = Annotated[str | None, Header(alias="Idempotency-Key")]
