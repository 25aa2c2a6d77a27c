"""Request dependencies shared by the routers (the ones that do no I/O are ``async`` so that
FastAPI does not hop to its thread pool for them): the database session, the signed-in user, the
operator check, amounts and money-moving requests. Each request is one unit of work
(``get_session``): routers never commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.identity import service as identity_service
from strongroom.identity.models import User
from strongroom.ledger.domain import TransferSpec
from strongroom.money import AssetRegistry, Money
from strongroom.movements import service as movements
from strongroom.movements.batcher import Batcher
from strongroom.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work (``db.finish``): committed after the endpoint returns and
    before the response is sent; on a refusal only the kept records are committed."""
    session: Session = request.app.state.session_factory()
    try:
        try:
            yield session
        except BaseException as error:
            raised = db.finish(session, error)
            if raised is None or raised is error:
                raise
            raise raised from error
        db.finish(session, None)
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def current_user(session: SessionDep, token: Annotated[str | None, Depends(bearer_token)]) -> User:
    return identity_service.authenticate(session=session, token=token)


UserDep = Annotated[User, Depends(current_user)]


class OperatorGuard:
    """Operators only (R-SEC-7, issue #3): the role must be one of ``roles`` (any operator role
    when empty), 2FA must be on (``two_factor_required``), and the call is written to the audit
    log (who, what, when, from where) as a kept record, so it stays even when the action itself
    is refused later."""

    def __init__(self, *roles: str) -> None:
        self.roles = roles

    def __call__(self, request: Request, user: UserDep, session: SessionDep) -> User:
        identity_service.require_operator(user, *self.roles)
        audit_operator_request(request, session, user)
        return user


def audit_operator_request(request: Request, session: Session, operator: User) -> None:
    """Record an operator's request in the audit log (who, what, when, from where) as a kept
    record (``db.keep``): it stays even when the action is refused afterwards."""
    route = request.scope.get("route")
    method, path, query = request.method, request.url.path, str(request.url.query)
    route_path: str = getattr(route, "path", path)
    ip = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent")
    operator_id = operator.id

    def write(kept: Session) -> None:
        identity_service.record_operator_action(
            session=kept,
            operator=kept.get_one(User, operator_id),
            method=method,
            route=route_path,
            path=path,
            query=query,
            ip=ip,
            user_agent=user_agent,
        )

    db.keep(session, write)


operator = OperatorGuard()
OperatorDep = Annotated[User, Depends(operator)]


def operator_with(*roles: str) -> Any:
    """``Depends`` for an endpoint open to some operator roles only."""
    return Depends(OperatorGuard(*roles))


async def assets(request: Request) -> AssetRegistry:
    registry: AssetRegistry = request.app.state.assets
    return registry


AssetsDep = Annotated[AssetRegistry, Depends(assets)]


def money(registry: AssetRegistry, amount: object, asset: object) -> Money:
    return registry.money(amount, asset)


IdempotencyKeyHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


def submit_transfer(
    *,
    request: Request,
    session: Session,
    settings: Settings,
    user: User,
    key: str | None,
    body: dict[str, Any],
    prepare: Callable[[Session], TransferSpec],
) -> JSONResponse:
    """A money-moving request through the money-movement service, once per Idempotency-Key
    in the scope of the user and ``METHOD path``: 201 with ``{id, status}``, also on a replay."""
    batcher: Batcher = request.app.state.batcher
    outcome = movements.submit(
        session=session,
        batcher=batcher,
        settings=settings,
        actor_id=user.id,
        operation=f"{request.method} {request.url.path}",
        key=key,
        request=body,
        prepare=prepare,
    )
    return JSONResponse(outcome.as_dict(), status_code=201)
