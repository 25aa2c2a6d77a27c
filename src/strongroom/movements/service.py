"""The one path of a money-moving request (SPEC P3), for the API, the Lite app's forms, the CLI
and later merchant terminals alike: check the idempotency key and answer a replay from the
stored outcome; otherwise let the caller's ``prepare`` check the request and name the accounts
(opening wallets on first use) in the request's unit of work, hand that unit of work's writes
over (``db.hand_off``), and queue the ``TransferSpec`` on the group-commit batcher, which claims
the key, moves the money and stores the outcome in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from strongroom import db
from strongroom.errors import Conflict
from strongroom.ledger.domain import TransferSpec
from strongroom.movements import idempotency
from strongroom.movements.batcher import Batcher, Prepared
from strongroom.movements.idempotency import Outcome
from strongroom.settings import Settings


def submit(
    *,
    session: Session,
    batcher: Batcher,
    settings: Settings,
    actor_id: str,
    operation: str,
    key: str | None,
    request: Any,
    prepare: Callable[[Session], TransferSpec | Prepared],
) -> Outcome:
    """Move money once per (actor, operation, key); the committed outcome.

    ``request`` is the request's content as JSON-able data: the same key with another request
    is refused (``idempotency_key_reused``). ``prepare`` may return a ``Prepared``: the
    transfer with rows to write in its transaction once it goes through. A refusal raised by
    ``prepare`` or by the ledger stores nothing under the key, so a retry runs anew."""
    claim = idempotency.claim_for(
        actor_id=actor_id,
        operation=operation,
        key=key,
        request=request,
        key_max_chars=settings.idempotency.key_max_chars,
    )
    replay = idempotency.stored_outcome(session=session, claim=claim)
    if replay is not None:
        return replay
    prepared = prepare(session)
    if isinstance(prepared, TransferSpec):
        prepared = Prepared(spec=prepared)
    db.hand_off(session)
    return batcher.submit_prepared(prepared, claim)


def run_once(
    *,
    session: Session,
    settings: Settings,
    actor_id: str,
    operation: str,
    key: str | None,
    request: Any,
    work: Callable[[Session], Outcome],
) -> Outcome:
    """A money-moving request of several legs (an FX conversion: two linked transfers and the
    locks they carry) done in the caller's own unit of work, once per (actor, operation, key),
    as ``submit`` does for single transfers: a replay answers the stored outcome; otherwise the
    key is claimed, ``work`` moves the money and the outcome is stored, all in this transaction
    (the unit of work commits or rolls back the claim with the money). A second request with the
    same key that runs meanwhile waits for the first (the key's row) on PostgreSQL and answers
    its outcome."""
    claim = idempotency.claim_for(
        actor_id=actor_id,
        operation=operation,
        key=key,
        request=request,
        key_max_chars=settings.idempotency.key_max_chars,
    )
    replay = idempotency.stored_outcome(session=session, claim=claim)
    if replay is not None:
        return replay
    if not idempotency.claim_all(session=session, claims=[claim]):
        replay = idempotency.stored_outcome(session=session, claim=claim)
        if replay is not None:
            return replay
        raise Conflict(
            "a request with this Idempotency-Key is still in progress",
            code="idempotency_key_in_progress",
        )
    outcome = work(session)
    idempotency.settle(session=session, done=[(claim, outcome)], refused=[])
    return outcome
