"""The API answers what its OpenAPI document says (issue #10, finding 7): Schemathesis generates
requests from ``/openapi.json`` for every operation and runs its default checks on each answer
(no 5xx, every status code documented, the documented content type, the response schema, the
``Allow`` header of a 405, schema-valid input accepted and invalid input refused, ...).

Twice: without credentials, and with them (a user's bearer token; an ``admin`` operator's for
the ``/v1/admin`` routes; a service key with the ``ledger`` scope for the raw ledger writes).
Money-moving requests get a fresh ``Idempotency-Key`` on every call, so they get past the
header's checks to the money-movement service.

Examples per operation: ``STRONGROOM_CONFORMANCE_EXAMPLES`` (default 12, sized for CI on two
cores); a deep local run: ``STRONGROOM_CONFORMANCE_EXAMPLES=300
pytest tests/api/test_openapi_conformance.py``.
The database is a fresh PostgreSQL one (``pg_engine``, emptied once for this module).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from strongroom.settings import Settings
from tests.api.conftest import make_settings, operator, signup
from tests.api.service_keys import make_key
from tests.conftest import _truncate

EXAMPLES = int(os.environ.get("STRONGROOM_CONFORMANCE_EXAMPLES", "12"))
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass
class Credentials:
    user_token: str
    operator_token: str
    ledger_key: str

    def headers(self, case: Any) -> dict[str, str]:
        """What the operation's security asks for: a service key for the raw ledger writes,
        an admin's token for the other /v1/admin routes, a user's token for the rest."""
        schemes = {
            name for item in case.operation.definition.raw.get("security", []) for name in item
        }
        if "serviceKey" in schemes:
            return {"X-Api-Key": self.ledger_key}
        admin = case.operation.path.startswith("/v1/admin")
        return {"Authorization": f"Bearer {self.operator_token if admin else self.user_token}"}


@pytest.fixture(scope="module")
def fresh_database(pg_engine: Engine) -> Engine:
    """The tests' PostgreSQL database, emptied once for this module."""
    _truncate(pg_engine)
    return pg_engine


@pytest.fixture
def conformance_app(fresh_database: Engine) -> FastAPI:
    """A new app for each operation: Schemathesis ends the app's lifespan (which closes its
    ledger batcher) after each test; the database and the credentials stay."""
    return create_app(make_settings(fresh_database), fresh_database)


@pytest.fixture(scope="module")
def credentials(fresh_database: Engine) -> Credentials:
    client = TestClient(create_app(make_settings(fresh_database), fresh_database))
    user = signup(client, "Conformance")
    user.topup("500.00")
    admin = operator(client, fresh_database, role="admin")
    return Credentials(
        user_token=user.token, operator_token=admin.token, ledger_key=make_key(fresh_database)
    )


def _load_schema(*, generated_credentials: bool) -> Any:
    """The document as the app serves it, read at import (Schemathesis parametrizes the tests by
    operation when they are collected) from an app on an unused SQLite engine: the document
    depends on the code, not on the database. The requests go to ``conformance_app``."""
    placeholder = Settings(
        env="test",
        database_url="sqlite://",
        run_worker=False,
        secret_key="test-secret-key-0123456789",
        rate_limits_enabled=False,
    )
    loaded = schemathesis.openapi.from_asgi("/openapi.json", create_app(placeholder))
    loaded.config.generation.update(
        max_examples=EXAMPLES, with_security_parameters=generated_credentials
    )
    return loaded


anonymous = _load_schema(generated_credentials=True)  # no token, or a made-up one
signed_in = _load_schema(generated_credentials=False)  # the test's own credentials only


def _headers(case: Any, credentials: dict[str, str]) -> dict[str, str]:
    """A fresh Idempotency-Key for a money-moving operation, and the credentials if any."""
    headers = dict(credentials)
    declared = {p.name.lower() for p in case.operation.headers}
    if IDEMPOTENCY_HEADER.lower() in declared:
        headers[IDEMPOTENCY_HEADER] = uuid.uuid4().hex
    return headers


SHAPE_CODES = frozenset({"validation_error", "malformed_json"})
"""The codes of a request the schema should have refused: a schema-valid request never gets them."""


def _refusal(response: Any) -> tuple[str, str] | None:
    """(status, error code) of an error answer, None for a success."""
    if response.status_code < 400:
        return None
    body = response.json()
    return str(response.status_code), body["error"]["code"]


def _documented(case: Any, status: str) -> str:
    answer = case.operation.definition.raw.get("responses", {}).get(status, {})
    return str(answer.get("description", ""))


def error_code_documented(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """Every error's code is named (in backticks) in its status's documented description, so a
    client reading the document knows every code it can get."""
    refusal = _refusal(response)
    if refusal is None:
        return None
    status, code = refusal
    if status in case.operation.definition.raw.get("responses", {}):
        assert f"`{code}`" in _documented(case, status), (
            f"{case.operation.label} answered {status} `{code}`, not named in its description: "
            f"{_documented(case, status)!r}"
        )
    return None


def schema_valid_input_accepted(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """Schemathesis' positive_data_acceptance, minus the refusals the schema cannot express: a
    schema-valid request may be refused with 400/422 only for a documented rule about state or
    configuration (`weak_password`: a common password; `unknown_asset`: an asset this deployment
    lacks; `invalid_reset_token`: a token nobody was sent), never as malformed (`validation_error`,
    `malformed_json`: the schema should have said so)."""
    refusal = _refusal(response)
    if (
        refusal is not None
        and refusal[1] not in SHAPE_CODES
        and f"`{refusal[1]}`" in _documented(case, refusal[0])
    ):
        return None
    return positive_data_acceptance(ctx, response, case)


def _validate(case: Any, app: FastAPI, credentials: dict[str, str]) -> None:
    case.call_and_validate(
        headers=_headers(case, credentials),
        app=app,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[schema_valid_input_accepted, error_code_documented],
    )


CHECK_SETTINGS = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


@anonymous.parametrize()
@CHECK_SETTINGS
def test_without_credentials(case: Any, conformance_app: FastAPI) -> None:
    _validate(case, conformance_app, {})


@signed_in.parametrize()
@CHECK_SETTINGS
def test_signed_in(case: Any, credentials: Credentials, conformance_app: FastAPI) -> None:
    _validate(case, conformance_app, credentials.headers(case))
