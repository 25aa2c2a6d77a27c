"""The authorization matrix: every endpoint in the app's route table (so a new endpoint is
covered the day it is added) refuses an anonymous caller, another user and an operator without
the role, and the refusal leaks nothing. Public endpoints are an explicit allow-list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select

from strongroom import db
from strongroom.api import OperatorGuard
from strongroom.identity.models import AuthToken
from strongroom.identity.service import OPERATOR_ROLES
from strongroom.ledger.models import Account
from strongroom.notify.models import OutboxEmail
from tests.api.conftest import Caller, operator, signup

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/password-reset"),
    ("POST", "/v1/auth/password-reset/confirm"),
    ("GET", "/v1/reserves/latest"),  # the published proof-of-reserves summary is for everyone
    ("GET", "/v1/reserves/{audit_id}"),  # ... and so is each published audit's
    ("GET", "/reserves"),  # the public reserves page
    ("GET", "/reserves/verify"),  # the verify page (the proof itself needs a token)
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    roles: tuple[str, ...] | None  # None: not an operator endpoint; (): any operator role

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    def fill(self, values: dict[str, str]) -> str:
        return re.sub(r"{(\w+)(?::\w+)?}", lambda m: values.get(m.group(1), "1"), self.path)


def _route_contexts(app: FastAPI) -> Iterator[object]:
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI with lazily included routers
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat
        yield from app.routes
        return
    yield from iter_route_contexts(app.routes)


def _operator_roles(route: object) -> tuple[str, ...] | None:
    original = getattr(route, "original_route", route)
    if not isinstance(original, APIRoute):
        return None
    pending, found = [original.dependant], None
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, OperatorGuard):
            found = dependant.call.roles or tuple(OPERATOR_ROLES)
        pending.extend(dependant.dependencies)
    return found


# The web pages (the Lite app, the operator console) sign in with a cookie, not a bearer
# token, and answer in HTML: their matrices (sign-in redirects, CSRF on every form, the console's
# roles) are tests/web/test_lite_http.py and tests/web/test_console_http.py.
WEB_PAGES = ("/app", "/console")


def endpoints(app: FastAPI) -> list[Endpoint]:
    found = []
    for route in _route_contexts(app):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is None or not methods:
            continue
        if any(path == prefix or path.startswith(prefix + "/") for prefix in WEB_PAGES):
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            found.append(Endpoint(method, path, _operator_roles(route)))
    return found


@pytest.fixture
def world(client, pg_db) -> dict[str, object]:
    """A victim with a session, a wallet and an email; an attacker; operators of every role."""
    victim = signup(client, "Victim")
    victim.topup("10.00")
    factory = db.make_session_factory(pg_db)
    with factory() as session:
        account = session.scalars(
            select(Account.id).where(Account.owner_id == victim.user_id)
        ).first()
        token = session.scalars(
            select(AuthToken.id).where(AuthToken.user_id == victim.user_id)
        ).first()
        email = session.scalars(
            select(OutboxEmail.id).where(OutboxEmail.user_id == victim.user_id)
        ).first()
    values = {
        "session_id": str(token),
        "account_id": str(account),
        "email_id": str(email),
        "user_id": victim.user_id,
        "id": str(token),
    }
    operators = {role: operator(client, pg_db, role) for role in OPERATOR_ROLES}
    return {
        "victim": victim,
        "attacker": signup(client, "Mallory"),
        "values": values,
        "operators": operators,
        "no_2fa": operator(client, pg_db, "admin", two_factor=False),
    }


def call(client, endpoint: Endpoint, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None if endpoint.method in ("GET", "DELETE") else {}
    return client.request(endpoint.method, path, json=body, headers=headers)


def assert_refused(
    response: httpx.Response, statuses: tuple[int, ...], victim: Caller, code: str | None = None
) -> None:
    assert response.status_code in statuses, (response.request.url, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    assert victim.email not in response.text and victim.user_id not in response.text
    assert "Traceback" not in response.text


def test_the_route_table_is_covered(app):
    found = endpoints(app)
    assert {(e.method, e.path) for e in found} >= PUBLIC - {("GET", "/redoc")}
    assert len([e for e in found if (e.method, e.path) not in PUBLIC]) >= 20
    assert any(e.roles == ("admin",) for e in found)
    assert any(e.roles == tuple(OPERATOR_ROLES) for e in found)


def test_anonymous_callers_are_refused_everywhere_but_public_endpoints(client, app, world):
    victim = world["victim"]
    for endpoint in endpoints(app):
        if (endpoint.method, endpoint.path) in PUBLIC:
            continue
        path = endpoint.fill(world["values"])
        for token in (None, "sr_not-a-real-token"):
            assert_refused(call(client, endpoint, path, token), (401,), victim)


def test_operator_endpoints_refuse_users_operators_without_2fa_and_other_roles(client, app, world):
    victim, attacker = world["victim"], world["attacker"]
    checked = 0
    for endpoint in endpoints(app):
        if endpoint.roles is None:
            continue
        path = endpoint.fill(world["values"])
        assert_refused(call(client, endpoint, path, attacker.token), (403,), victim, "forbidden")
        assert_refused(
            call(client, endpoint, path, world["no_2fa"].token),
            (403,),
            victim,
            "two_factor_required",
        )
        for role, caller in world["operators"].items():
            if role not in endpoint.roles:
                assert_refused(
                    call(client, endpoint, path, caller.token), (403,), victim, "forbidden"
                )
        checked += 1
    assert checked >= 6


def test_another_user_cannot_reach_a_victims_resources(client, app, world):
    """User endpoints act on the caller's own data: a victim's ids in the path are not found,
    and no page shows the victim."""
    victim, attacker = world["victim"], world["attacker"]
    for endpoint in endpoints(app):
        if endpoint.roles is not None or (endpoint.method, endpoint.path) in PUBLIC:
            continue
        path = endpoint.fill(world["values"])
        if endpoint.params:
            assert_refused(call(client, endpoint, path, attacker.token), (403, 404), victim)
        elif endpoint.method == "GET":
            response = call(client, endpoint, path, attacker.token)
            assert response.status_code < 500, response.text
            assert victim.email not in response.text and victim.user_id not in response.text
    assert victim.get("/v1/me").status_code == 200  # the victim's session survived it all
    assert victim.balance()["total"] == "10.00"
