"""Deliver the outbox over SMTP (R-MAIL-1): bounded retries with exponential backoff.

A sweep claims due rows in one short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
SQLite the transaction holds the single write lock): each claimed row moves one lease into the
future, gets a fresh ``claim_token`` and one more attempt. Sending happens outside any
transaction; each result is written back only while the claim token still matches. So two workers
never hold one row at the same time, and a worker that stops half way leaves its rows to be claimed
again once the lease ends. A worker stops sending when less than two SMTP timeouts of its lease are
left.

Results are written back in groups, not one transaction per email: an email the server accepted
(or refused for good) waits in memory until ``mail.sent_commit_max`` results wait or the oldest is
``mail.sent_commit_ms`` old, and the group is then recorded in one transaction (one UPDATE for the
sent, one for the failed). The group is always written before the SMTP session ends, so before the
lease runs out. When the connection fails, every claim the sweep still holds is settled in that
same single transaction and the outage is logged once. The one case that can repeat an email is a
crash between the SMTP server's acceptance and the write-back: it now repeats up to
``sent_commit_max`` emails (those accepted since the last write-back), each with the Message-ID
fixed per row, so a receiver can tell.
"""

from __future__ import annotations

import logging
import re
import secrets
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from sqlalchemy import ColumnElement, case, literal, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from strongroom.db import UTCDateTime, is_postgres, unit_of_work, utcnow
from strongroom.errors import invariant
from strongroom.notify import outbox
from strongroom.notify.models import FAILED, PENDING, SENT, OutboxEmail
from strongroom.notify.outbox import SCRUBBED
from strongroom.settings import MailSettings, Settings

log = logging.getLogger("strongroom.mail")
ADDRESS = re.compile(r"[^\s<>'\"@]+@[^\s<>'\"@]+")
"""An email address inside an SMTP error's text (a refused recipient): kept out of the log."""
ERROR_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool
    username: str
    password: str
    mail_from: str
    timeout_s: float
    ca_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            mail_from=settings.mail_from,
            timeout_s=settings.mail.smtp_timeout_s,
            ca_file=settings.mail.smtp_ca_file,
        )

    @property
    def domain(self) -> str:
        address = parseaddr(self.mail_from)[1]
        return address.rpartition("@")[2] or "strongroom.local"


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    token: str
    template_id: str
    to_address: str
    subject: str
    body_text: str
    body_html: str
    sensitive: bool
    attempts: int


@dataclass(slots=True)
class DeliveryReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def backoff_s(attempts: int, mail: MailSettings) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base x 2^(n-1), capped."""
    invariant(attempts >= 1, "backoff follows an attempt")
    return float(min(mail.backoff_base_s * 2 ** min(attempts - 1, 40), mail.backoff_max_s))


def claim_due(*, session: Session, now: datetime, mail: MailSettings) -> list[Claim]:
    """Claim up to ``batch_max`` due emails for this worker (call in its own transaction)."""
    session.execute(
        update(OutboxEmail)
        .where(
            OutboxEmail.status == PENDING,
            OutboxEmail.available_at <= now,
            OutboxEmail.attempts >= mail.max_attempts,
        )
        .values(status=FAILED, claim_token=None)
    )
    query = (
        select(OutboxEmail)
        .where(
            OutboxEmail.status == PENDING,
            OutboxEmail.available_at <= now,
            OutboxEmail.attempts < mail.max_attempts,
        )
        .order_by(OutboxEmail.available_at, OutboxEmail.id)
        .limit(mail.batch_max)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    claims = []
    for row in session.scalars(query):
        row.claim_token = secrets.token_hex(16)
        row.attempts += 1
        row.available_at = now + timedelta(seconds=mail.lease_s)
        try:
            email = outbox.content(row)  # a deferred email is rendered here, once per attempt
        except Exception as error:  # a context this code cannot render
            log.exception("outbox email %d cannot be rendered; it is not sent", row.id)
            row.status, row.claim_token = FAILED, None
            row.last_error = f"cannot be rendered: {type(error).__name__}"
            continue
        claims.append(
            Claim(
                id=row.id,
                token=row.claim_token,
                template_id=row.template_id,
                to_address=row.to_address,
                subject=email.subject,
                body_text=email.text,
                body_html=email.html,
                sensitive=row.sensitive,
                attempts=row.attempts,
            )
        )
    session.flush()
    return claims


def build_message(claim: Claim, config: SmtpConfig) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config.mail_from
    message["To"] = claim.to_address
    message["Subject"] = claim.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<outbox-{claim.id}@{config.domain}>"
    message["X-Strongroom-Template"] = claim.template_id
    message["X-Strongroom-Outbox-Id"] = str(claim.id)
    message.set_content(claim.body_text)
    message.add_alternative(claim.body_html, subtype="html")
    return message


def mark_sent(*, session: Session, claim: Claim, now: datetime) -> bool:
    """Record one email as sent, if its claim still holds (see ``mark_sent_many``)."""
    return bool(mark_sent_many(session=session, claims=[claim], now=now))


def mark_sent_many(*, session: Session, claims: Sequence[Claim], now: datetime) -> set[int]:
    """Record a group of sent emails with one UPDATE; the ids whose claim still held.

    A sensitive body (a reset link, a code) is replaced by ``SCRUBBED`` in the same statement, so
    no row is ever SENT with its secret still stored.
    """
    if not claims:
        return set()
    values: dict[str, object] = {
        "status": SENT,
        "sent_at": now,
        "claim_token": None,
        "last_error": None,
    }
    secret = [claim.id for claim in claims if claim.sensitive]
    if secret:
        values["body_text"] = _scrubbed(secret, OutboxEmail.body_text)
        values["body_html"] = _scrubbed(secret, OutboxEmail.body_html)
    done = session.execute(
        update(OutboxEmail)
        .where(*_still_claimed(claims))
        .values(**values)
        .returning(OutboxEmail.id)
        .execution_options(synchronize_session=False)
    )
    return set(done.scalars())


def mark_failed(
    *, session: Session, claim: Claim, error: str, now: datetime, mail: MailSettings
) -> str:
    """Schedule the next attempt with backoff, or give up after ``max_attempts``."""
    mark_failed_many(session=session, failures=[(claim, error)], now=now, mail=mail)
    return FAILED if claim.attempts >= mail.max_attempts else PENDING


def mark_failed_many(
    *,
    session: Session,
    failures: Sequence[tuple[Claim, str]],
    now: datetime,
    mail: MailSettings,
) -> dict[int, str]:
    """Settle failed attempts with one UPDATE: each row backs off from its own attempts (or is
    FAILED after ``max_attempts``); the new status of each row whose claim still held.

    One statement, whatever the count, because an SMTP outage fails a whole sweep at once, every
    poll: a statement and a commit per email cost the server as much as the ledger did.
    """
    if not failures:
        return {}
    claims = [claim for claim, _ in failures]
    next_at = {
        claim.attempts: now + timedelta(seconds=backoff_s(claim.attempts, mail)) for claim in claims
    }
    # the claim token matched means the row's attempts are still the claim's: only a claim
    # (with a fresh token) or an operator's requeue (clearing the token) changes them
    available_at = case(
        *(
            (OutboxEmail.attempts == attempts, literal(at, UTCDateTime()))
            for attempts, at in next_at.items()
        ),
        else_=OutboxEmail.available_at,
    )
    status = case((OutboxEmail.attempts >= mail.max_attempts, FAILED), else_=PENDING)
    errors = {claim.id: error[:ERROR_MAX_CHARS] for claim, error in failures}
    last_error: object = next(iter(errors.values()))
    if len(set(errors.values())) > 1:
        last_error = case(errors, value=OutboxEmail.id)
    done = session.execute(
        update(OutboxEmail)
        .where(*_still_claimed(claims))
        .values(status=status, available_at=available_at, claim_token=None, last_error=last_error)
        .returning(OutboxEmail.id, OutboxEmail.status)
        .execution_options(synchronize_session=False)
    )
    return {row_id: row_status for row_id, row_status in done}


def _still_claimed(claims: Sequence[Claim]) -> tuple[ColumnElement[bool], ...]:
    """Rows whose claim token is still one of these claims'. Each token is 128 random bits made
    for one row by ``claim_due``, so a row holding any of the tokens holds its own claim's."""
    return (
        OutboxEmail.id.in_([claim.id for claim in claims]),
        OutboxEmail.claim_token.in_([claim.token for claim in claims]),
    )


def _scrubbed(ids: list[int], column: InstrumentedAttribute[str]) -> ColumnElement[str]:
    return case((OutboxEmail.id.in_(ids), SCRUBBED), else_=column)


def _tls_context(config: SmtpConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=config.ca_file or None)


@contextmanager
def smtp_connection(config: SmtpConfig) -> Iterator[smtplib.SMTP]:
    """An SMTP session: STARTTLS and login as configured; closed however the block ends."""
    smtp = smtplib.SMTP(
        config.host, config.port, local_hostname=config.domain, timeout=config.timeout_s
    )
    try:
        if config.starttls:
            smtp.starttls(context=_tls_context(config))
        if config.username:
            smtp.login(config.username, config.password)
        yield smtp
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


@dataclass(slots=True)
class Results:
    """Results of a sweep not yet written back: the accepted and the refused emails, and when the
    oldest arrived (``time.monotonic``)."""

    sent: list[Claim] = field(default_factory=list)
    failed: list[tuple[Claim, str]] = field(default_factory=list)
    since: float = 0.0

    def __len__(self) -> int:
        return len(self.sent) + len(self.failed)

    def add_sent(self, claim: Claim) -> None:
        self._arrives()
        self.sent.append(claim)

    def add_failed(self, claim: Claim, error: str) -> None:
        self._arrives()
        self.failed.append((claim, error))

    def due(self, mail: MailSettings) -> bool:
        """Whether to write back now: enough results, or the oldest has waited long enough."""
        if len(self) >= mail.sent_commit_max:
            return True
        return bool(self) and time.monotonic() - self.since >= mail.sent_commit_ms / 1000

    def _arrives(self) -> None:
        if not self:
            self.since = time.monotonic()


def deliver_once(
    factory: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> DeliveryReport:
    """One sweep: claim what is due, send it over one SMTP session, record the results in groups
    (see the module docstring for what a crash can then repeat)."""
    now = now or utcnow()
    mail = settings.mail
    with unit_of_work(factory) as session:
        claims = claim_due(session=session, now=now, mail=mail)
    report = DeliveryReport(claimed=len(claims))
    if not claims:
        return report
    config = SmtpConfig.from_settings(settings)
    pending = deque(claims)
    results = Results()
    deadline = time.monotonic() + mail.lease_s - 2 * mail.smtp_timeout_s
    try:
        with smtp_connection(config) as smtp:
            while pending and time.monotonic() < deadline:
                _send_one(smtp, pending[0], config, results)
                pending.popleft()  # settled; a lost connection leaves it to the handler below
                if results.due(mail):
                    write_back(factory, results, now=now, mail=mail, report=report)
            write_back(factory, results, now=now, mail=mail, report=report)
    except (smtplib.SMTPException, OSError) as error:
        log.warning(
            "SMTP %s:%d unavailable (%s); %d email(s) wait for a retry",
            config.host,
            config.port,
            _without_addresses(str(error)),
            len(pending),
        )
        for claim in pending:
            results.add_failed(claim, f"{type(error).__name__}: {error}")
        write_back(factory, results, now=now, mail=mail, report=report)
    return report


def _send_one(smtp: smtplib.SMTP, claim: Claim, config: SmtpConfig, results: Results) -> None:
    """Send one email; a refusal of this email alone is its result, a lost connection raises."""
    try:
        smtp.send_message(build_message(claim, config))
    except (
        smtplib.SMTPRecipientsRefused,
        smtplib.SMTPSenderRefused,
        smtplib.SMTPDataError,
    ) as error:
        results.add_failed(claim, f"{type(error).__name__}: {error}")
        return
    results.add_sent(claim)


def write_back(
    factory: sessionmaker[Session],
    results: Results,
    *,
    now: datetime,
    mail: MailSettings,
    report: DeliveryReport,
) -> None:
    """Record the waiting results in one transaction, then count and log them; ``results`` is
    empty afterwards."""
    if not results:
        return
    with unit_of_work(factory) as session:
        sent = mark_sent_many(session=session, claims=results.sent, now=now)
        failed = mark_failed_many(session=session, failures=results.failed, now=now, mail=mail)
    report.sent += len(sent)
    taken = sorted(claim.id for claim in results.sent if claim.id not in sent)
    if taken:
        log.error("outbox email(s) %s were sent, but their claims had been taken over", taken)
    report.retrying += sum(1 for status in failed.values() if status == PENDING)
    _log_given_up(
        [(claim, error) for claim, error in results.failed if failed.get(claim.id) == FAILED]
    )
    report.failed += sum(1 for status in failed.values() if status == FAILED)
    results.sent.clear()
    results.failed.clear()


def _log_given_up(given_up: list[tuple[Claim, str]]) -> None:
    """One line per distinct error: an outage that ends many emails' attempts logs once."""
    by_error: dict[tuple[int, str], list[int]] = {}
    for claim, error in given_up:
        by_error.setdefault((claim.attempts, _without_addresses(error)), []).append(claim.id)
    for (attempts, error), ids in by_error.items():
        log.error(
            "outbox email(s) %s failed for good after %d attempts: %s",
            ", ".join(map(str, ids)),
            attempts,
            error,
        )


def _without_addresses(text: str) -> str:
    """An SMTP error for the log: the email id says whose it was, not the address (issue #10)."""
    return ADDRESS.sub("<address>", text)


def run(factory: sessionmaker[Session], settings: Settings, stop: threading.Event) -> None:
    """Deliver until ``stop`` is set; a full batch is followed at once by the next sweep."""
    while not stop.is_set():
        claimed = 0
        try:
            claimed = deliver_once(factory, settings).claimed
        except Exception:
            log.exception("mail sweep failed; retrying in %.1f s", settings.mail.poll_interval_s)
        if claimed < settings.mail.batch_max:
            stop.wait(settings.mail.poll_interval_s)


def start_thread(factory: sessionmaker[Session], settings: Settings) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(factory, settings, stop), name="sr-mail", daemon=True
    )
    thread.start()
    return stop
