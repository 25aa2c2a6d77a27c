"""create_app(): routers, middleware, and the one place errors become HTTP (SPEC P4)."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom import worker
from strongroom.api import openapi, request_checks
from strongroom.api.adjustments import router as adjustments_router
from strongroom.api.banking import router as banking_router
from strongroom.api.batch_body import BatchBody
from strongroom.api.funding import router as funding_router
from strongroom.api.fx import router as fx_router
from strongroom.api.gifts import router as gifts_router
from strongroom.api.identity import router as identity_router
from strongroom.api.kyc import SUBMISSIONS_PATH as KYC_SUBMISSIONS_PATH
from strongroom.api.kyc import router as kyc_router
from strongroom.api.lane import FastLane, LaneCounts
from strongroom.api.ledger import router as ledger_router
from strongroom.api.limits import router as limits_router
from strongroom.api.merchants import admin_router as merchants_admin_router
from strongroom.api.merchants import pay_router as merchants_pay_router
from strongroom.api.merchants import router as merchants_router
from strongroom.api.notify import router as notify_router
from strongroom.api.paycodes import router as paycodes_router
from strongroom.api.payments import router as payments_router
from strongroom.api.payout_batches import router as payout_batches_router
from strongroom.api.privacy import router as privacy_router
from strongroom.api.purchases import router as purchases_router
from strongroom.api.reserves import router as reserves_router
from strongroom.api.tokens import router as tokens_router
from strongroom.api.withdrawals import router as withdrawals_router
from strongroom.db import make_engine, make_group_commit_engine, make_session_factory
from strongroom.errors import DomainError
from strongroom.kyc import institutional
from strongroom.movements.batcher import Batcher
from strongroom.notify import delivery as mail_delivery
from strongroom.ratelimit.service import RateLimiter
from strongroom.settings import Settings, get_settings
from strongroom.web import api_docs, console, lite, merchant
from strongroom.web import core as web_core
from strongroom.web import errors as web_errors
from strongroom.web import reserves as reserves_pages

log = logging.getLogger("strongroom")

# One /static mount for every server-rendered part; each package keeps its files under a folder
# named after its part (static/reserves/..., static/web/...); the list lives in web.core.
STATIC_PACKAGES = web_core.STATIC_PACKAGES

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


UNREADABLE_BODY = "There was an error parsing the body"  # FastAPI's 400 for a body it cannot read


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _batcher(factory: sessionmaker[Session], settings: Settings) -> Batcher:
    """The process's group commit: one batching thread on SQLite (one writer at a time); on
    PostgreSQL its threads have connections of their own (``db.make_group_commit_engine``)."""
    engine: Engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        return Batcher(factory, max_batch=settings.ledger.group_commit_max, threads=1)
    threads = settings.ledger.group_commit_threads
    own = make_group_commit_engine(engine, connections=threads + 1)
    return Batcher(
        make_session_factory(own),
        max_batch=settings.ledger.group_commit_max,
        threads=threads,
        on_close=own.dispose,
    )


class StrongroomAPI(FastAPI):
    """The application: FastAPI, with the transfers' fast lane (``api.lane``) in front of all
    of it (a plain ``POST /v1/transfers`` on PostgreSQL costs no middleware or routing)."""

    lane: FastLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lane is None:
            await super().__call__(scope, receive, send)
        else:
            await self.lane(scope, receive, send)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_production()
    engine = engine or make_engine(settings.database_url, pool_size=settings.database_pool_size)
    factory = make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(started: FastAPI) -> AsyncIterator[None]:
        if started.state.batcher.closed:  # a second lifespan of the same app (tests)
            started.state.batcher = _batcher(factory, settings)
        stops = (
            [
                worker.start_thread(
                    factory,
                    settings.idempotency,
                    limits=settings.rate_limits,
                    funding=settings.funding,
                    gift_settings=settings.gifts,
                    settings=settings,
                )
            ]
            if settings.run_worker
            else []
        )
        if settings.run_worker and settings.mail.deliver:
            stops.append(mail_delivery.start_thread(factory, settings))
        # Everything allocated so far (imports, the app and its routes, settings) goes to the
        # collector's permanent generation: a full collection, which otherwise scans all of it,
        # stalled an 8,000-transfer batch for ~0.3 s while it held its account locks (issue
        # #14). What requests allocate is collected as before, less often (``gc_thresholds``).
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(*settings.ledger.gc_thresholds)
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
        for stop in stops:
            stop.set()
        started.state.batcher.close()

    app = StrongroomAPI(
        title="Strongroom",
        version="0.1.0",
        lifespan=lifespan,
        description="Stored-value wallet back office: ledger, payments, reserves.",
        # /docs is Swagger UI from the package (web.api_docs), not FastAPI's CDN page; no ReDoc
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = factory
    app.state.batcher = _batcher(factory, settings)
    app.state.assets = settings.asset_registry()
    app.state.rate_limiter = RateLimiter(factory, settings.rate_limits)
    app.state.lane_counts = LaneCounts()
    uploads = settings.kyc.upload_request_max_bytes()
    app.add_middleware(BatchBody)  # inside the body limit: the batch route's plain items
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.request_body_max_bytes,
        larger={
            KYC_SUBMISSIONS_PATH: uploads,
            "/app/kyc": uploads,
            "/app/kyc/institutional": institutional.FILES_MAX * settings.kyc.document_max_bytes
            + settings.kyc.form_overhead_bytes,
        },
    )
    app.add_middleware(SecurityHeaders, headers=transport_headers(settings))
    app.lane = FastLane(  # outside everything: it hands over any request it does not answer
        functools.partial(FastAPI.__call__, app),
        state=app.state,
        max_bytes=settings.request_body_max_bytes,
        enabled=settings.ledger.fast_lane and engine.dialect.name == "postgresql",
        headers=transport_headers(settings),
    )
    _install_error_handlers(app)
    for router in (
        identity_router,
        ledger_router,
        adjustments_router,
        kyc_router,
        funding_router,
        purchases_router,
        payments_router,
        paycodes_router,
        tokens_router,
        merchants_admin_router,
        merchants_router,
        merchants_pay_router,
        payout_batches_router,
        fx_router,
        banking_router,
        privacy_router,
        withdrawals_router,
        limits_router,
        gifts_router,
        notify_router,
        reserves_router,
        reserves_pages.router,
        lite.router,
        console.router,
        merchant.router,
        api_docs.router,
    ):
        app.include_router(router, dependencies=request_checks(router))
    app.mount(web_core.STATIC_URL, StaticFiles(packages=STATIC_PACKAGES), name="static")
    openapi.install(app)  # the shared answers, error schema and security schemes

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _install_error_handlers(app: FastAPI) -> None:
    # Web pages (/app, /console) answer errors with an HTML page (web.errors); the rest in JSON.
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, error: DomainError) -> Response:
        page = web_errors.page_for(request, error.status, error.code)
        if page is not None:
            return page
        return JSONResponse(
            error_body(error.code, error.message, error.details),
            status_code=error.status,
            headers=getattr(error, "headers", None),  # e.g. a 429's Retry-After
        )

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_request: Request, error: BodyTooLarge) -> Response:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        page = web_errors.page_for(request, 422)
        if page is not None:
            return page
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
            for e in error.errors()
        ]
        if any(e.get("type") == "json_invalid" for e in error.errors()):
            return JSONResponse(
                error_body("malformed_json", "request body is not valid JSON"), status_code=400
            )
        return JSONResponse(
            error_body("validation_error", "request is not valid", {"problems": problems[:20]}),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        page = web_errors.page_for(request, error.status_code)
        if page is not None:
            return page
        code = HTTP_CODES.get(error.status_code, "http_error")
        if error.status_code == 400 and error.detail == UNREADABLE_BODY:
            code = "malformed_json"  # a body that is not even text (FastAPI reads it first)
        headers = getattr(error, "headers", None)
        if error.status_code == 405:  # every route of this path, not only the first one's
            headers = {"Allow": ", ".join(openapi.allowed_methods(request.app, request.scope))}
        return JSONResponse(
            error_body(code, str(error.detail)), status_code=error.status_code, headers=headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        page = web_errors.page_for(request, 500)
        if page is not None:
            page.headers.update(transport_headers(request.app.state.settings))
            return page
        return JSONResponse(
            error_body("internal_error", "something went wrong on our side"),
            status_code=500,
            headers=transport_headers(request.app.state.settings),
        )


def transport_headers(settings: Settings) -> dict[str, str]:
    """What every answer carries: HSTS in production (only there: the demo and a developer's
    server run on plain http, where a browser would then refuse them)."""
    if settings.env != "production":
        return {}
    return {"Strict-Transport-Security": f"max-age={settings.hsts_max_age_s}"}


class SecurityHeaders:
    """Adds ``headers`` to every answer, errors and static files included (the outermost of our
    middleware; the 500 handler adds them itself, its answer is sent outside)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.raw:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.raw]}
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyTooLarge(StarletteHTTPException):
    """A request body that passed ``request_body_max_bytes`` while it was being received. An
    ``HTTPException``, so that FastAPI's body parsing passes it on instead of answering 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail="request body too large")
        self.max_bytes = max_bytes

    def response(self) -> JSONResponse:
        details = {"max_bytes": self.max_bytes}
        body = error_body("payload_too_large", "request body too large", details)
        return JSONResponse(body, status_code=413, headers={"Connection": "close"})


class BodyLimit:
    """Refuse request bodies over the configured size (P5): a ``Content-Length`` over it before
    anything is read, and any body (``Transfer-Encoding: chunked`` too, which has no length) as
    soon as the bytes received pass it: 413 ``payload_too_large``, ``details.max_bytes``. The
    rest of the body is never read; the server closes the connection. The upload routes
    (``larger``: path → bytes, e.g. KYC documents) have a limit of their own."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope.get("path", ""), self.max_bytes)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > max_bytes):
            await BodyTooLarge(max_bytes).response()(scope, receive, send)
            return
        received_bytes = 0
        response_started = False

        async def counted() -> Message:
            nonlocal received_bytes
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as refused:  # raised where no exception handler saw it
            if response_started:
                raise
            await refused.response()(scope, receive, send)
