"""Background work: void pending transfers whose timeout passed (R-LEDGER-3).

Runs inside ``strongroom serve`` (a thread per process) and as ``strongroom worker``. Several
workers at once are safe: each void locks the accounts, and a second void is refused.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.ledger import service as ledger

log = logging.getLogger("strongroom.worker")


def sweep_once(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as session:
        return ledger.expire_pending(session=session)


def run(factory: sessionmaker[Session], stop: threading.Event, interval_s: float = 1.0) -> None:
    while not stop.is_set():
        try:
            voided = sweep_once(factory)
            if voided:
                log.info("voided %d expired pending transfers", voided)
        except Exception:
            log.exception("sweep failed; retrying in %.1f s", interval_s)
        stop.wait(interval_s)


def start_thread(factory: sessionmaker[Session], interval_s: float = 1.0) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(factory, stop, interval_s), name="sr-sweeper", daemon=True
    )
    thread.start()
    return stop
