"""The fast lane of ``POST /v1/transfers`` on PostgreSQL (issue #14, SPEC §14).

A plain ASGI layer in front of the FastAPI app. A single P2P transfer costs the server a few
milliseconds of CPU on the route (FastAPI's routing, dependency solving, body model and
middlewares, two thread-pool hops, four reads and a commit per request); the lane takes the
plain requests off that path: it reads the body, checks its shape as the route's ``TransferIn``
would, takes the bearer token and the Idempotency-Key, and queues the request on the group
commit (``Batcher.submit_lane``), where the token, recipient and wallets of the whole batch are
read in its own transaction (``movements.lane``) and the transfer, its key and both receipts are
committed together, as the route's are.

Everything that is not plain is **handed to the route** with the body as it came: a missing or
odd header, a query string, a body the lane does not recognise (a phone number, an amount it
cannot parse, another field), and every request the batch would refuse or whose key is already
taken. Only the route answers errors and replays, so the answers stay exactly its answers; the
lane only ever answers 201 for a transfer it committed. The lane and the route cannot both move
money for one key: the key is claimed in the transaction that moves the money, whichever path
gets there first.

The body limit stays the route's: the lane reads a body only when its ``Content-Length`` is
within ``max_bytes``, and hands every other one over unread. The security headers are added by
``SecurityHeaders`` around this layer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom.errors import DomainError
from strongroom.identity import phones
from strongroom.identity import service as identity
from strongroom.money import AssetRegistry
from strongroom.movements import idempotency, lane
from strongroom.movements.batcher import Batcher
from strongroom.settings import Settings

PATH = "/v1/transfers"
TO_MAX_CHARS = 254  # the route's TransferIn
NOTE_MAX_CHARS = 140
FIELDS = frozenset({"to", "asset", "amount", "note"})
HEADERS = (b"authorization", b"idempotency-key", b"content-type", b"content-length")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # made once, not per answer


@dataclass(slots=True)
class LaneCounts:
    """How many transfer requests the lane answered and handed to the route (``app.state``):
    what an operator (and a test) reads to know the lane is doing its work."""

    answered: int = 0
    handed_back: int = 0


class FastLane:
    """Answers plain ``POST /v1/transfers`` requests itself; hands everything else to ``app``
    (the whole application: its middlewares, routing and error handlers).

    It is the outermost layer (``StrongroomAPI.__call__``), so a plain transfer costs no
    middleware; its 201 carries the ``headers`` the ``SecurityHeaders`` middleware adds to
    every other answer. ``state``: the application's (settings, assets, batcher, counts)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: Any,
        max_bytes: int,
        enabled: bool,
        headers: dict[str, str],
    ) -> None:
        self.app = app
        self.state = state
        self.max_bytes = max_bytes
        self.enabled = enabled
        self.headers = [
            (b"content-type", b"application/json"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        length = headers.get(b"content-length", b"")
        if headers is _ODD or not length.isdigit() or int(length) > self.max_bytes:
            await self.app(scope, receive, send)
            return
        received, body = await _read(receive, self.max_bytes)
        outcome = None
        if body is not None:
            outcome = await self._commit(headers, body)
        counts: LaneCounts = self.state.lane_counts
        if outcome is None:
            counts.handed_back += 1
            await self.app(scope, _replaying(received, receive), send)
            return
        counts.answered += 1
        content = _JSON.encode(outcome.as_dict()).encode()
        answer = [*self.headers, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 201, "headers": answer})
        await send({"type": "http.response.body", "body": content})

    async def _commit(self, headers: dict[bytes, bytes], body: bytes) -> idempotency.Outcome | None:
        """The committed outcome of a plain request; None when the route is to answer it."""
        settings: Settings = self.state.settings
        try:
            request = read_request(headers, body, self.state.assets, settings)
        except Exception:  # whatever the lane cannot read, the route answers
            request = None
        if request is None:
            return None
        batcher: Batcher = self.state.batcher
        loop = asyncio.get_running_loop()
        future = batcher.submit_lane(request, settings, loop)
        # a timeout ends the wait only: the route then answers the key as it stands (a timer
        # on the future, not ``asyncio.timeout``: that costs several times more per request)
        timer = loop.call_later(batcher.result_timeout_s, _give_up, future)
        try:
            return await future
        except Exception:  # handed back, refused, timed out, a database error: nothing moved
            return None
        finally:
            timer.cancel()


def _give_up(future: asyncio.Future[idempotency.Outcome]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("the group commit did not answer in time"))


_ODD: dict[bytes, bytes] = {}


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The headers the lane reads; ``_ODD`` when one of them is given twice."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in HEADERS:
            if name in found:
                return _ODD
            found[name] = value
    return found


async def _read(receive: Receive, max_bytes: int) -> tuple[list[Message], bytes | None]:
    """The messages received and the body; None for the body when it did not arrive whole
    within ``max_bytes`` (the route then reads the rest, and refuses it)."""
    received: list[Message] = []
    size = 0
    while len(received) <= max_bytes:  # bounded: every message but the last carries bytes
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        size += len(message.get("body", b""))
        if size > max_bytes:
            return received, None
        if not message.get("more_body", False):
            return received, b"".join(m.get("body", b"") for m in received)
    return received, None


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back what the lane already read."""
    waiting = list(received)

    async def replay() -> Message:
        if waiting:
            return waiting.pop(0)
        return await receive()

    return replay


def read_request(
    headers: dict[bytes, bytes], body: bytes, registry: AssetRegistry, settings: Settings
) -> lane.LaneRequest | None:
    """The request as the route's ``TransferIn``, bearer token and Idempotency-Key would read
    it, or None where the lane leaves it to the route (anything not plain)."""
    content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
    if content_type.split(";")[0].strip() != "application/json":
        return None
    token = _bearer(headers.get(b"authorization"))
    key = headers.get(b"idempotency-key")
    if token is None or key is None:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not parsed.keys() <= FIELDS:
        return None
    fields = _fields(parsed, settings)
    if fields is None:
        return None
    to, asset, amount, note = fields
    recipient_id, recipient_email = _recipient(to)
    if recipient_id is None and recipient_email is None:
        return None
    try:
        money = registry.money(amount, asset)
        checked_key = idempotency.check_key(
            key.decode("latin-1"), max_chars=settings.idempotency.key_max_chars
        )
    except DomainError:
        return None
    request = {"to": to, "asset": asset, "amount": amount, "note": note}
    return lane.LaneRequest(
        token_hash=identity.token_digest(token),
        to=to,
        recipient_id=recipient_id,
        recipient_email=recipient_email,
        amount=money,
        note=note,
        key=checked_key,
        fingerprint=idempotency.fingerprint(lane.OPERATION, request),
    )


def _fields(parsed: dict[str, Any], settings: Settings) -> tuple[str, str, Any, str | None] | None:
    """``to``, ``asset``, ``amount`` and ``note`` when each is of the plain kind the route
    takes (``amount`` a string or a whole number), else None."""
    to, asset, amount, note = (parsed.get(name) for name in ("to", "asset", "amount", "note"))
    if not isinstance(to, str) or not 1 <= len(to) <= TO_MAX_CHARS:
        return None
    if not isinstance(asset, str) or not (
        isinstance(amount, str) or (isinstance(amount, int) and not isinstance(amount, bool))
    ):
        return None
    note_max = min(NOTE_MAX_CHARS, settings.ledger.note_max_chars)
    if note is not None and (not isinstance(note, str) or len(note) > note_max):
        return None
    return to, asset, amount, note


def _bearer(value: bytes | None) -> str | None:
    """``api.bearer_token``: the token of ``Bearer <token>``, None when there is none."""
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _recipient(to: str) -> tuple[str | None, str | None]:
    """(user id, normalised email) as ``payments.check_send`` reads ``to``; (None, None) for a
    phone number or anything else the route should read."""
    reference = to.strip()
    if reference.startswith("u_"):
        return reference, None
    if phones.looks_like_phone(reference):
        return None, None
    try:
        return None, identity.normalise_email(reference)
    except DomainError:
        return None, None
