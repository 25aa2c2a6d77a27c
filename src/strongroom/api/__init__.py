"""Request dependencies shared by the routers (the ones that do no I/O are ``async`` so that
FastAPI does not hop to its thread pool for them): the database session, the signed-in user, the
operator check, amounts and money-moving requests. Each request is one unit of work
(``get_session``): routers never commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.errors import Forbidden, ValidationFailed, present
from strongroom.identity import api_keys, roles
from strongroom.identity import service as identity_service
from strongroom.identity.audit import Origin
from strongroom.identity.models import User
from strongroom.ledger.domain import TransferSpec
from strongroom.money import AssetRegistry
from strongroom.movements import service as movements
from strongroom.movements.batcher import Batcher, Prepared
from strongroom.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work (``db.finish``): committed after the endpoint returns and
    before the response is sent; on a refusal only the kept records are committed.

    Opening a session does no I/O, and neither does ending one that holds no transaction (a
    money-moving request's was committed by ``db.hand_off``): only a unit of work with
    something to commit or roll back goes to the thread pool, so most requests make two
    thread-pool hops fewer than a synchronous dependency would (issue #14)."""
    session = request.app.state.session_factory()
    try:
        try:
            yield session
        except BaseException as error:
            raised = await run_in_threadpool(db.finish, session, error)
            if raised is error:
                raise
            raise present(raised, "a refused unit of work reports a refusal") from error
        if db.idle(session):
            db.finish(session, None)
        else:
            await run_in_threadpool(db.finish, session, None)
    finally:
        if db.idle(session):
            session.close()
        else:
            await run_in_threadpool(session.close)


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
    """Operators only (R-SEC-7, R-SEC-10): the role must hold ``capability`` in the one role
    table (``identity.roles.TABLE``), 2FA must be on (``two_factor_required``), and the call is
    written to the audit log (who, what, when, from where) as a kept record, so it stays even
    when the action itself is refused later (a refusal by role included: it is an operator's
    attempt)."""

    def __init__(self, capability: str) -> None:
        self.capability = capability
        self.roles = roles.holders(capability)

    def __call__(self, request: Request, user: UserDep, session: SessionDep) -> User:
        identity_service.require_operator(user)
        audit_operator_request(request, session, user)
        roles.require(user.operator_role, self.capability)
        return user


def audit_operator_request(request: Request, session: Session, operator: User) -> None:
    """Record an operator's request in the audit log (who, what, when, from where) as a kept
    record (``db.keep``): it stays even when the action is refused afterwards."""
    route_path, method, path, query = _what(request)
    origin = origin_of(request)
    operator_id = operator.id

    def write(kept: Session) -> None:
        identity_service.record_operator_action(
            session=kept,
            operator=kept.get_one(User, operator_id),
            method=method,
            route=route_path,
            path=path,
            query=query,
            ip=origin.ip,
            user_agent=origin.user_agent,
        )

    db.keep(session, write)


def _what(request: Request) -> tuple[str, str, str, str]:
    """The route template, method, path and query of a request (for the audit log)."""
    route = request.scope.get("route")
    path = request.url.path
    return getattr(route, "path", path), request.method, path, str(request.url.query)


def origin_of(request: Request) -> Origin:
    return Origin(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def operator_with(capability: str) -> Any:
    """``Depends`` for an endpoint open to the operator roles that hold ``capability``."""
    return Depends(OperatorGuard(capability))


async def single_valued_query(request: Request) -> None:
    """A query parameter given twice is refused (422 ``validation_error``): the API reads one
    value of each, and which of two a client meant is not for it to guess."""
    counts = Counter(key for key, _ in request.query_params.multi_items())
    repeated = sorted(key for key, count in counts.items() if count > 1)
    if repeated:
        problems = [
            {"field": f"query.{key}", "problem": "given more than once"} for key in repeated
        ]
        raise ValidationFailed("a query parameter is given more than once", problems=problems[:20])


def request_checks(router: APIRouter) -> list[Any]:
    """What every HTTP API route checks before its own dependencies (app.py includes the API's
    routers with it; the web pages' forms are their own)."""
    return [Depends(single_valued_query)] if router.prefix.startswith("/v1") else []


RowIdPath = Annotated[int, Path(ge=1, lt=db.ROW_ID_LIMIT)]
"""A row id in a path: a number the database's BIGINT key can hold."""

ApiKeyHeader = Annotated[str | None, Header(alias="X-Api-Key")]


class ServiceKeyGuard:
    """Integrations only (R-SEC-10): a live service key with ``scope`` in ``X-Api-Key``.
    People are refused: a bearer token without a key gets 403 ``service_key_required`` (a
    person is who it is, and this route is not for people, whatever their role); no
    credentials 401 ``api_key_required``; an unknown or revoked key 401 ``invalid_api_key``; a
    key of another scope 403 ``insufficient_scope``. Every request made with a key is written to
    the audit log (the key's id and name, the route, when, from where) as a kept record."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def __call__(
        self,
        request: Request,
        session: SessionDep,
        key: ApiKeyHeader = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> api_keys.Caller:
        if not key and authorization:
            raise Forbidden(
                "this route serves integrations: send a service key with the "
                f"{self.scope} scope in X-Api-Key (operators use /v1/admin/adjustments)",
                code="service_key_required",
                scope=self.scope,
            )
        caller = api_keys.authenticate(session=session, key=key, scope=self.scope)
        route_path, method, path, query = _what(request)
        origin = origin_of(request)

        def write(kept: Session) -> None:
            api_keys.record_use(
                session=kept,
                caller=caller,
                method=method,
                route=route_path,
                path=path,
                query=query,
                origin=origin,
            )

        db.keep(session, write)
        return caller


LedgerKeyDep = Annotated[api_keys.Caller, Depends(ServiceKeyGuard(api_keys.LEDGER))]
"""A service key with the ``ledger`` scope: the raw ledger writes."""


async def assets(request: Request) -> AssetRegistry:
    registry: AssetRegistry = request.app.state.assets
    return registry


AssetsDep = Annotated[AssetRegistry, Depends(assets)]


IdempotencyKeyHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


def submit_transfer(
    *,
    request: Request,
    session: Session,
    settings: Settings,
    user: User,
    key: str | None,
    body: dict[str, Any],
    prepare: Callable[[Session], TransferSpec | Prepared],
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
