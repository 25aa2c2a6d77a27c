"""The shared part of the OpenAPI document (api/openapi.py) and the answers that keep the API to
it: a route added later is documented from what it depends on, a 405 names every method of its
path, and requests the document calls malformed are refused as such."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from strongroom.api import UserDep, operator_with
from strongroom.app import create_app
from tests.api.conftest import make_settings

ERROR_REF = {"$ref": "#/components/schemas/Error"}


class NoteIn(BaseModel):
    text: str


@pytest.fixture
def app(sqlite_db: Engine) -> FastAPI:
    return create_app(make_settings(sqlite_db), sqlite_db)


def test_a_route_added_later_is_documented_from_its_dependencies(app: FastAPI):
    @app.post("/v1/notes", status_code=201)
    def add_note(
        body: NoteIn,
        user: UserDep,
        key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> dict[str, str]:
        return {"id": "n1"}

    @app.get("/v1/admin/notes", dependencies=[operator_with("audit")])
    def list_notes() -> dict[str, list[str]]:
        return {"items": []}

    document = TestClient(app).get("/openapi.json").json()
    added = document["paths"]["/v1/notes"]["post"]
    assert added["security"] == [{"bearer": []}]
    assert [p["name"] for p in added["parameters"]] == ["Idempotency-Key"]  # no Authorization
    answers = added["responses"]
    assert sorted(answers) == ["201", "400", "401", "409", "413", "422"]
    for status, codes in {
        "400": ["malformed_json"],
        "401": ["unauthorized", "invalid_token", "token_expired"],
        "409": ["idempotency_key_reused"],
        "413": ["payload_too_large"],
        "422": ["validation_error", "invalid_idempotency_key"],
    }.items():
        assert answers[status]["content"]["application/json"]["schema"] == ERROR_REF
        for code in codes:
            assert f"`{code}`" in answers[status]["description"], (status, code)
    admin = document["paths"]["/v1/admin/notes"]["get"]["responses"]
    assert sorted(admin) == ["200", "401", "403"]  # nothing to validate: no 422
    assert "`two_factor_required`" in admin["403"]["description"]
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_service_key_routes_declare_the_key_scheme(app: FastAPI):
    document = TestClient(app).get("/openapi.json").json()
    batch = document["paths"]["/v1/admin/ledger/transfers"]["post"]
    assert batch["security"] == [{"serviceKey": []}]
    assert "parameters" not in batch  # X-Api-Key and Authorization are the scheme's
    assert document["components"]["securitySchemes"]["serviceKey"]["name"] == "X-Api-Key"


def test_an_empty_success_declares_no_body(app: FastAPI):
    document = TestClient(app).get("/openapi.json").json()
    assert "content" not in document["paths"]["/v1/auth/password-reset"]["post"]["responses"]["202"]
    csv = document["paths"]["/v1/transactions.csv"]["get"]["responses"]["200"]
    assert "text/csv" in csv["content"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/v1/me/anti-phishing-code", "DELETE, PUT"),  # two routes, one path
        ("OPTIONS", "/v1/me/anti-phishing-code", "DELETE, PUT"),
        ("GET", "/v1/me/sessions/revoke-others", "POST"),  # not the {session_id} route's
        ("PUT", "/v1/me/sessions/s_1", "DELETE"),
    ],
)
def test_a_405_names_every_method_of_its_path(app: FastAPI, method: str, path: str, allow: str):
    response = TestClient(app).request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_body_that_is_not_text_is_malformed_json(app: FastAPI):
    response = TestClient(app).post(
        "/v1/auth/login", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_query_parameter_given_twice_is_refused(app: FastAPI):
    client = TestClient(app)
    twice = client.get("/v1/reserves/latest?limit=1&limit=2")
    assert twice.status_code == 422, twice.text
    assert twice.json()["error"]["details"]["problems"] == [
        {"field": "query.limit", "problem": "given more than once"}
    ]
    assert client.get("/v1/reserves/latest?limit=1").status_code == 404  # once: no audit yet
