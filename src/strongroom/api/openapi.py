"""The OpenAPI document says what the API answers (issue #10, finding 7), and the parts every
route shares are written here once, from what each route depends on, so that a route added later
is documented without anyone thinking about it:

- every error is ``{"error": {"code", "message", "details"}}`` (the ``Error`` schema, SPEC P4);
- a bearer token (``api.bearer_token``) is the ``bearer`` security scheme and can answer 401; an
  operator route (``api.OperatorGuard``) 401 and 403; a service-key route (``api.ServiceKeyGuard``)
  is the ``serviceKey`` scheme and answers 401 and 403;
- a JSON body can answer 400 ``malformed_json``, 413 ``payload_too_large`` and 422; any
  parameter 422 ``validation_error``; an ``Idempotency-Key`` 409 and 422;
- a 202 or 204 whose route declares no body has no content.

What only one route answers (the 404 of a lookup, the 409 of a conflict, a 429 of a throttled
route) is on the route's own ``responses=``; the description of each status names its error
codes in backticks, and the codes written here are added to a route's own description when it
does not name them. ``allowed_methods`` gives a 405's ``Allow`` header (app.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.routing import Match

from strongroom.api import OperatorGuard, ServiceKeyGuard, bearer_token

IDEMPOTENCY_HEADER: Final = "idempotency-key"
ERROR_REF: Final = "#/components/schemas/Error"
BEARER: Final = "bearer"
SERVICE_KEY: Final = "serviceKey"
SECURITY_SCHEMES: Final[dict[str, dict[str, Any]]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "A user's or an operator's token from `POST /v1/auth/login`.",
    },
    SERVICE_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": "An integration's service key (`strongroom admin create-api-key`).",
    },
}
METHODS_MAX: Final = 16
FASTAPI_422: Final = "Validation Error"


class ErrorBody(BaseModel):
    code: str = Field(description="What went wrong, for programs (e.g. `insufficient_funds`)")
    message: str = Field(description="What went wrong, for people")
    details: dict[str, Any] = Field(description="Facts about the refusal; `{}` when none")


class Error(BaseModel):
    """Every error answer of the API (SPEC P4)."""

    error: ErrorBody


@dataclass
class Answers:
    """What a route can answer because of what it depends on: status → error codes."""

    codes: dict[int, list[str]] = field(default_factory=dict)
    security: list[str] = field(default_factory=list)
    hidden_headers: set[str] = field(default_factory=set)

    def add(self, status: int, *codes: str) -> None:
        known = self.codes.setdefault(status, [])
        known.extend(code for code in codes if code not in known)


BEARER_401: Final = ("unauthorized", "invalid_token", "token_expired")
OPERATOR_403: Final = ("forbidden", "two_factor_required")
KEY_401: Final = ("api_key_required", "invalid_api_key")
KEY_403: Final = ("service_key_required", "insufficient_scope")
DESCRIPTIONS: Final[dict[int, str]] = {
    400: "Bad request",
    401: "Not signed in, or not with valid credentials",
    403: "Signed in, but not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large (`details.max_bytes`)",
    422: "The request is not valid (`validation_error`: `details.problems`)",
    429: "Too many requests (`Retry-After`)",
}


def api_routes(app: FastAPI) -> list[Any]:
    """Every API route of ``app`` as its handler sees it (FastAPI >= 0.130 keeps an included
    router as one entry: its routes, with their prefix, are its route contexts)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    found = list(contexts(app.routes)) if contexts is not None else list(app.routes)
    return [r for r in found if isinstance(getattr(r, "original_route", r), APIRoute)]


def answers_of(route: Any) -> Answers:
    """The statuses and codes that ``route`` can answer from its dependencies and parameters."""
    found = Answers()
    dependants = list(_walk(route.dependant))
    calls = [d.call for d in dependants]
    if any(isinstance(call, ServiceKeyGuard) for call in calls):
        found.security.append(SERVICE_KEY)
        found.hidden_headers.update({"x-api-key", "authorization"})
        found.add(401, *KEY_401)
        found.add(403, *KEY_403)
    elif bearer_token in calls:
        found.security.append(BEARER)
        found.hidden_headers.add("authorization")
        found.add(401, *BEARER_401)
    if any(isinstance(call, OperatorGuard) for call in calls):
        found.add(403, *OPERATOR_403)
    if route.body_field is not None:
        found.add(400, "malformed_json")
        found.add(413, "payload_too_large")
        found.add(422, "validation_error")
    params = [p for d in dependants for p in (*d.path_params, *d.query_params, *d.header_params)]
    if any(p.alias.lower() not in found.hidden_headers for p in params):
        found.add(422, "validation_error")
    if any(p.alias.lower() == IDEMPOTENCY_HEADER for p in params):
        found.add(409, "idempotency_key_reused", "idempotency_key_in_progress")
        found.add(422, "invalid_idempotency_key")
    return found


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    """``dependant`` and every dependency below it (FastAPI's tree is finite and shallow)."""
    yield dependant
    for child in dependant.dependencies:
        yield from _walk(child)


def complete(document: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Add the shared answers, the error schema and the security schemes to ``document``."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    defs = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(defs.pop("$defs", {}))
    schemas["Error"] = defs
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in routes:
        if not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _complete_operation(operation, route, answers_of(route))
    _drop_unused(schemas, document, ("HTTPValidationError", "ValidationError"))
    return document


def _complete_operation(operation: dict[str, Any], route: Any, found: Answers) -> None:
    if found.security:
        operation["security"] = [{scheme: []} for scheme in found.security]
        kept = [
            p
            for p in operation.get("parameters", [])
            if not (p.get("in") == "header" and p["name"].lower() in found.hidden_headers)
        ]
        if kept:
            operation["parameters"] = kept
        else:
            operation.pop("parameters", None)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if 422 not in found.codes and responses.get("422", {}).get("description") == FASTAPI_422:
        del responses["422"]  # FastAPI's guess for a route whose parameters cannot be invalid
    for status, codes in found.codes.items():
        answer = responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
        missing = [f"`{code}`" for code in codes if f"`{code}`" not in answer["description"]]
        if missing:
            answer["description"] = f"{answer['description']}; also {', '.join(missing)}"
    for key, answer in responses.items():
        if key.startswith(("4", "5")):
            answer["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}
        elif key in ("202", "204") and _declares_no_body(answer, route):
            answer.pop("content", None)


def _declares_no_body(answer: dict[str, Any], route: Any) -> bool:
    """A success the route gave no model or media type: FastAPI writes an empty JSON schema,
    and the handler answers an empty body."""
    content = answer.get("content")
    return route.response_model is None and content in (None, {"application/json": {"schema": {}}})


def _drop_unused(schemas: dict[str, Any], document: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        schemas.pop(name, None)
        if f"#/components/schemas/{name}" in json.dumps(document):
            raise RuntimeError(f"the document still refers to {name}")


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (and ``/docs``)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    completed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not completed:
            completed.append(complete(generate(), api_routes(app)))
        return completed[0]

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> list[str]:
    """The methods the request's path answers, over every route that matches it (Starlette's
    405 names only the first route's): the ``Allow`` header of a 405. A path without
    parameters is matched before a templated one (OpenAPI's rule: ``/me/sessions/revoke-others``
    is not one of the ``/me/sessions/{session_id}``)."""
    matching = [r for r in api_routes(app) if r.methods and r.matches(scope)[0] is not Match.NONE]
    fewest = min((len(r.param_convertors) for r in matching), default=0)
    methods = {m for r in matching if len(r.param_convertors) == fewest for m in r.methods}
    return sorted(methods)[:METHODS_MAX]
