"""The body of ``POST /v1/admin/ledger/transfers`` read without a Pydantic model per item.

A batch holds up to 8,000 transfers. FastAPI validates its body in the event loop, as 8,000
``TransferIn`` models (three Python validators and a pattern each), one long call that holds
the GIL: every thread of the process waits meanwhile, the one that holds a batch's account locks
included (issue #14). ``BatchBody``, an ASGI layer inside the body limit, reads such a body, and
in the thread pool checks every item against a plain subset of what ``TransferIn`` accepts (the
same types, bounds and defaults, nothing coerced). When every item passes, the route gets the
items as ``BatchItem`` tuples under ``ITEMS`` in the request's scope and an empty batch as its
body; when anything does not (a field it does not know, a number as text, malformed JSON, not
``application/json``, no ``Content-Length``), the body goes on untouched and FastAPI checks it
as before: every refusal, and the OpenAPI document, are the route's own, byte for byte.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom.db import ROW_ID_LIMIT

PATH = "/v1/admin/ledger/transfers"
ITEMS = "strongroom.ledger_batch_items"
"""The scope key of the items read here (only this layer sets it)."""
EMPTY_BATCH = b'{"transfers":[]}'
CODE = re.compile(r"[a-z0-9_]+")  # TransferIn.code's pattern, without `$`'s final newline
ID_MAX, CODE_MAX, NOTE_MAX = 64, 32, 280  # TransferIn's max_length of id/pending_id, code, note


class BatchItem(NamedTuple):
    """One transfer of a batch, as ``TransferIn`` would hold it (same names and defaults)."""

    id: str | None
    kind: str
    debit_account_id: int | None
    credit_account_id: int | None
    asset: str | None
    amount: Any
    pending_id: str | None
    timeout_s: int | None
    code: str
    note: str | None
    linked: bool


FIELDS = frozenset(BatchItem._fields)


class BatchBody:
    """See the module: the batch route's body read as plain items when all of them are plain."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _candidate(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        ended: Message | None = None  # a disconnect before the body's end is handed on
        while True:
            message = await receive()
            if message["type"] != "http.request":
                ended = message
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if ended is None:
            items = await run_in_threadpool(read_items, body)
            if items is not None:
                scope[ITEMS] = items
                body = EMPTY_BATCH
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        if ended is not None:
            pending.append(ended)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


def _candidate(scope: Scope) -> bool:
    """A POST to the batch route with one JSON ``Content-Type`` and one ``Content-Length`` (the
    body limit has checked it: the body read here is never over it)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("path") != PATH:
        return False
    if scope.get("query_string"):
        return False
    types = [v for k, v in scope.get("headers", []) if k == b"content-type"]
    lengths = [v for k, v in scope.get("headers", []) if k == b"content-length"]
    return types == [b"application/json"] and len(lengths) == 1 and lengths[0].isdigit()


def read_items(body: bytes) -> list[BatchItem] | None:
    """The batch's items if the body is ``{"transfers": [...]}`` and every item is plain; None
    otherwise (FastAPI then reads the body as before)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if type(document) is not dict or document.keys() != {"transfers"}:
        return None
    transfers = document["transfers"]
    if type(transfers) is not list:
        return None
    items = []
    for raw in transfers:
        item = _item(raw)
        if item is None:
            return None
        items.append(item)
    return items


def _item(raw: object) -> BatchItem | None:
    """One item as ``TransferIn`` would take it, or None when it might not (then FastAPI says)."""
    if type(raw) is not dict or not FIELDS.issuperset(raw):
        return None
    get = raw.get
    transfer_id, pending_id, note = get("id"), get("pending_id"), get("note")
    kind, code, linked = get("kind", "posted"), get("code", "operator"), get("linked", False)
    debit, credit, timeout_s = get("debit_account_id"), get("credit_account_id"), get("timeout_s")
    asset = get("asset")
    if not (
        _text(transfer_id, ID_MAX)
        and _text(pending_id, ID_MAX)
        and _text(note, NOTE_MAX)
        and type(kind) is str
        and (asset is None or type(asset) is str)
        and type(code) is str
        and len(code) <= CODE_MAX
        and CODE.fullmatch(code) is not None
        and type(linked) is bool
        and _account_id(debit)
        and _account_id(credit)
        and (timeout_s is None or type(timeout_s) is int)
    ):
        return None
    return BatchItem(
        transfer_id,
        kind,
        debit,
        credit,
        asset,
        get("amount"),
        pending_id,
        timeout_s,
        code,
        note,
        linked,
    )


def _text(value: object, max_chars: int) -> bool:
    return value is None or (type(value) is str and len(value) <= max_chars)


def _account_id(value: object) -> bool:
    return value is None or (type(value) is int and 1 <= value < ROW_ID_LIMIT)
