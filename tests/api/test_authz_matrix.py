"""The authorization matrix: every endpoint in the app's route table (so a new endpoint is
covered the day it is added) is walked with no credentials, a user, an operator without 2FA,
an operator of every role, and, for the raw ledger writes, service keys of the right scope,
another scope, revoked and made up. Operator endpoints answer exactly as the one role table
(``identity.roles.TABLE``) says; the raw ledger writes only to a key with the ``ledger``
scope (R-SEC-10). A refusal writes nothing (every table's row count is unchanged but the audit
log's, which records the attempt) and leaks nothing. Public endpoints are an explicit
allow-list; the console's pages are walked the same way in tests/web/test_console_roles.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.adjustments import service as adjustments
from strongroom.api import OperatorGuard, ServiceKeyGuard
from strongroom.banking.models import BankAccount
from strongroom.db import Base
from strongroom.identity import roles
from strongroom.identity.models import AuditEvent, AuthToken, User
from strongroom.identity.service import OPERATOR_ROLES
from strongroom.ledger import service as ledger
from strongroom.ledger.models import Account
from strongroom.notify.models import OutboxEmail
from strongroom.settings import LedgerLimits
from tests.api.conftest import Caller, operator, signup
from tests.api.service_keys import foreign_scope_key, make_key, revoked_key

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/password-reset"),
    ("POST", "/v1/auth/password-reset/confirm"),
    ("POST", "/v1/auth/verify-email"),  # the emailed link's token is the credential
    ("GET", "/v1/reserves/latest"),  # the published proof-of-reserves summary is for everyone
    ("GET", "/v1/reserves/{audit_id}"),  # ... and so is each published audit's
    ("GET", "/reserves"),  # the public reserves page
    ("GET", "/reserves/verify"),  # the verify page (the proof itself needs a token)
    ("POST", "/v1/webhooks/{connector}"),  # a connector's HMAC signature is the credential
}
BROWSER_FORMS = {  # pages' POSTs: a signed-in browser's CSRF token first (403 csrf_failed)
    ("POST", "/reserves/proof-token"),
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    roles: frozenset[str] | None  # the roles an operator endpoint opens to; None: not one
    scope: str | None = None  # the service key scope a key endpoint takes; None: not one

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


def _guards(route: object) -> tuple[frozenset[str] | None, str | None]:
    """The roles of the route's ``OperatorGuard`` and the scope of its ``ServiceKeyGuard``."""
    original = getattr(route, "original_route", route)
    if not isinstance(original, APIRoute):
        return None, None
    pending, found_roles, found_scope = [original.dependant], None, None
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, OperatorGuard):
            found_roles = dependant.call.roles
        if isinstance(dependant.call, ServiceKeyGuard):
            found_scope = dependant.call.scope
        pending.extend(dependant.dependencies)
    return found_roles, found_scope


# The web pages (the Lite app, the operator console) sign in with a cookie, not a bearer
# token, and answer in HTML: their matrices (sign-in redirects, CSRF on every form, the console's
# roles) are tests/web/test_lite_http.py, test_console_http.py and test_console_roles.py.
WEB_PAGES = ("/app", "/console", "/merchant")  # the merchant portal: tests/web


def endpoints(app: FastAPI) -> list[Endpoint]:
    found = []
    for route in _route_contexts(app):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is None or not methods:
            continue
        if any(path == prefix or path.startswith(prefix + "/") for prefix in WEB_PAGES):
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            found.append(Endpoint(method, path, *_guards(route)))
    return found


def rows(engine: Engine) -> dict[str, int]:
    """Every table's row count but the audit log's (a refused operator's attempt is recorded
    there on purpose)."""
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
            if table.name != AuditEvent.__tablename__
        }


def audit_actions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def world(client, pg_db) -> dict[str, object]:
    """A victim with a session, a wallet, an email and a bank account; an attacker; operators
    of every role; a pending adjustment proposed by a finance operator who is none of them;
    service keys."""
    victim = signup(client, "Victim")
    victim.topup("10.00")
    pending = victim.post("/v1/topups", {"asset": "HKD", "amount": "0.88", "channel": "sandbox"})
    assert pending.json()["status"] == "pending"  # the sandbox's timed-out top-up: a record
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
    with db.unit_of_work(factory) as session:  # a linked bank account of the victim's
        bank_account = BankAccount(
            user_id=victim.user_id, holder_name="Victim", bank_code="004", account_number="1234567"
        )
        session.add(bank_account)
        session.flush()
        bank_account_id = bank_account.id
    maker = operator(client, pg_db, "finance")
    device = victim.post("/v1/devices", {"name": "victim's phone"}, key=None).json()
    card = victim.post("/v1/tokens", {}, key=None).json()
    values = {
        "device_id": device["device_id"],
        "token_id": card["id"],
        "bank_account_id": str(bank_account_id),
        "session_id": str(token),
        "account_id": str(account),
        "email_id": str(email),
        "user_id": victim.user_id,
        "id": str(token),
        "adjustment_id": str(_pending_adjustment(pg_db, maker.user_id, int(account or 0))),
        "topup_id": pending.json()["id"],
    }
    operators = {role: operator(client, pg_db, role) for role in OPERATOR_ROLES}
    return {
        "victim": victim,
        "attacker": signup(client, "Mallory"),
        "values": values,
        "operators": operators,
        "no_2fa": operator(client, pg_db, "admin", two_factor=False),
        "keys": {
            "ledger": make_key(pg_db),
            "store_cash": make_key(pg_db, scope="store_cash"),
            "other_scope": foreign_scope_key(pg_db),
            "revoked": revoked_key(pg_db),
            "made_up": "srk_" + "A" * 43,
        },
    }


def _pending_adjustment(engine: Engine, maker_id: str, wallet_id: int) -> int:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        omnibus = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD")
        row = adjustments.propose(
            session=session,
            proposer=session.get_one(User, maker_id),
            proposal=adjustments.Proposal(omnibus.id, wallet_id, "HKD", 1_00, "matrix"),
            limits=LedgerLimits(),
        )
        return row.id


def call(
    client, endpoint: Endpoint, path: str, token: str | None, key: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if key is not None:
        headers["X-Api-Key"] = key
    body = None if endpoint.method in ("GET", "DELETE") else {}
    return client.request(endpoint.method, path, json=body, headers=headers)


def assert_refused(
    response: httpx.Response, statuses: tuple[int, ...], victim: Caller, code: str | None = None
) -> None:
    assert response.status_code in statuses, (response.request.url, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    if code is not None:
        assert body["error"]["code"] == code, (response.request.url, body)
    assert victim.email not in response.text and victim.user_id not in response.text
    assert "Traceback" not in response.text


def test_the_route_table_is_covered(app):
    found = endpoints(app)
    assert {(e.method, e.path) for e in found} >= PUBLIC - {("GET", "/redoc")}
    assert len([e for e in found if (e.method, e.path) not in PUBLIC]) >= 20
    admin_routes = [e for e in found if e.path.startswith("/v1/admin/")]
    assert len(admin_routes) >= 10
    for endpoint in admin_routes:  # no operator route without a guard, and never both
        assert (endpoint.roles is None) != (endpoint.scope is None), endpoint
        assert endpoint.roles is None or endpoint.roles in roles.TABLE.values(), endpoint
    writes = {(e.method, e.path) for e in found if e.scope == "ledger"}
    assert writes == {
        ("POST", "/v1/admin/ledger/transfers"),
        ("POST", "/v1/admin/ledger/accounts"),
    }
    money = roles.holders("balances")
    for path in (
        "/v1/admin/ledger/accounts/{account_id}",
        "/v1/admin/ledger/accounts/{account_id}/statement",
    ):
        assert next(e.roles for e in found if e.path == path) == money == {"admin", "finance"}
    assert next(e.roles for e in found if e.path == "/v1/admin/audit") == {"admin"}


MEMBER_OR_KEY = "/v1/merchant/"
"""Routes a merchant's terminal key or a signed-in member of the merchant may call."""


def test_anonymous_callers_are_refused_everywhere_but_public_endpoints(client, app, world, pg_db):
    victim = world["victim"]
    before = rows(pg_db)
    for endpoint in endpoints(app):
        if (endpoint.method, endpoint.path) in PUBLIC:
            continue
        path = endpoint.fill(world["values"])
        nothing = call(client, endpoint, path, None)
        if (endpoint.method, endpoint.path) in BROWSER_FORMS:
            assert_refused(nothing, (403,), victim, "csrf_failed")
        elif endpoint.scope is not None:
            assert_refused(nothing, (401,), victim, "api_key_required")
            made_up = call(client, endpoint, path, "sr_not-a-real-token")
            if endpoint.path.startswith(MEMBER_OR_KEY):
                # a merchant's routes also take a signed-in member's token: a made-up one is
                # an invalid token there
                assert_refused(made_up, (401,), victim)
            else:
                # a made-up bearer token is still a person's: not what these routes take
                assert_refused(made_up, (403,), victim, "service_key_required")
        else:
            assert_refused(nothing, (401,), victim)
            assert_refused(call(client, endpoint, path, "sr_not-a-real-token"), (401,), victim)
    assert rows(pg_db) == before


def test_operator_endpoints_answer_exactly_as_the_role_table_says(client, app, world, pg_db):
    """Users, operators without 2FA and every role outside the table's row are refused (403,
    nothing written but the audit event of the attempt); every role in it is let through."""
    victim, attacker = world["victim"], world["attacker"]
    checked, let_through = 0, []
    before, audited = rows(pg_db), len(audit_actions(pg_db))
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
            if role in endpoint.roles:
                let_through.append((endpoint, role, caller))
            else:
                answer = call(client, endpoint, path, caller.token)
                assert_refused(answer, (403,), victim, "forbidden")
                assert answer.json()["error"]["details"]["roles"] == sorted(endpoint.roles)
        checked += 1
    assert checked >= 10
    assert rows(pg_db) == before  # refusals wrote nothing ...
    assert set(audit_actions(pg_db)[audited:]) == {"operator.api"}  # ... but the attempts
    for endpoint, role, caller in let_through:
        answer = call(client, endpoint, endpoint.fill(world["values"]), caller.token)
        assert answer.status_code not in (401, 403), (endpoint, role, answer.text)


def test_raw_ledger_writes_take_only_a_ledger_service_key(client, app, world, pg_db):
    """R-SEC-10: a person's token is refused on the raw ledger writes whatever the role (403
    ``service_key_required``), and so are keys of another scope, revoked and made-up keys;
    a key with the ``ledger`` scope is let through (here to the body's validation). The store
    terminal's cash confirmation (scope ``store_cash``, issue #12) is held to the same."""
    victim, keys = world["victim"], world["keys"]
    writes = [e for e in endpoints(app) if e.scope is not None]
    assert len(writes) == 3
    assert {e.scope for e in writes} == {"ledger", "store_cash"}
    before = rows(pg_db)
    for endpoint in writes:
        path = endpoint.fill(world["values"])
        people = [world["attacker"], world["no_2fa"], *world["operators"].values()]
        for person in people:
            answer = call(client, endpoint, path, person.token)
            assert_refused(answer, (403,), victim, "service_key_required")
        for name, code, status in (
            ("other_scope", "insufficient_scope", 403),
            ("revoked", "invalid_api_key", 401),
            ("made_up", "invalid_api_key", 401),
        ):
            answer = call(client, endpoint, path, None, keys[name])
            assert_refused(answer, (status,), victim, code)
        admin = world["operators"]["admin"]
        both = call(client, endpoint, path, admin.token, keys["revoked"])
        assert_refused(both, (401,), victim, "invalid_api_key")  # a token does not help a key
    assert rows(pg_db) == before
    for endpoint in writes:
        key = keys[str(endpoint.scope)]
        answer = call(client, endpoint, endpoint.fill(world["values"]), None, key)
        assert answer.status_code == 422, answer.text  # let in, then the empty body refused


def test_another_user_cannot_reach_a_victims_resources(client, app, world):
    """User endpoints act on the caller's own data: a victim's ids in the path are not found,
    and no page shows the victim."""
    victim, attacker = world["victim"], world["attacker"]
    for endpoint in endpoints(app):
        if endpoint.roles is not None or endpoint.scope is not None:
            continue
        if (endpoint.method, endpoint.path) in PUBLIC:
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
