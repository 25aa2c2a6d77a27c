"""Deliver the outbox over SMTP (R-MAIL-1): bounded retries with exponential backoff.

A sweep claims due rows in one short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
SQLite the transaction holds the single write lock): each claimed row moves one lease into the
future, gets a fresh ``claim_token`` and one more attempt. Sending happens outside any
transaction; each result is written back only while the claim token still matches. So two workers
never hold one row at the same time, and a worker that stops half way leaves its rows to be claimed
again once the lease ends. A worker stops sending when less than two SMTP timeouts of its lease are
left. The one case that can repeat an email is a crash between the SMTP server's acceptance and the
write-back; every message carries a Message-ID fixed per row, so a receiver can tell.
"""

from __future__ import annotations

import logging
import re
import secrets
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import is_postgres, unit_of_work, utcnow
from strongroom.errors import invariant
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
        claims.append(
            Claim(
                id=row.id,
                token=row.claim_token,
                template_id=row.template_id,
                to_address=row.to_address,
                subject=row.subject,
                body_text=row.body_text,
                body_html=row.body_html,
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
    values: dict[str, object] = {
        "status": SENT,
        "sent_at": now,
        "claim_token": None,
        "last_error": None,
    }
    if claim.sensitive:
        values |= {"body_text": SCRUBBED, "body_html": SCRUBBED}
    done = session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == claim.id, OutboxEmail.claim_token == claim.token)
        .values(**values)
    )
    return bool(getattr(done, "rowcount", 0))


def mark_failed(
    *, session: Session, claim: Claim, error: str, now: datetime, mail: MailSettings
) -> str:
    """Schedule the next attempt with backoff, or give up after ``max_attempts``."""
    status = FAILED if claim.attempts >= mail.max_attempts else PENDING
    next_at = now + timedelta(seconds=backoff_s(claim.attempts, mail))
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == claim.id, OutboxEmail.claim_token == claim.token)
        .values(
            status=status,
            available_at=next_at,
            claim_token=None,
            last_error=error[:ERROR_MAX_CHARS],
        )
    )
    return status


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


def deliver_once(
    factory: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> DeliveryReport:
    """One sweep: claim what is due, send it over one SMTP session, record each result."""
    now = now or utcnow()
    mail = settings.mail
    with unit_of_work(factory) as session:
        claims = claim_due(session=session, now=now, mail=mail)
    report = DeliveryReport(claimed=len(claims))
    if not claims:
        return report
    config = SmtpConfig.from_settings(settings)
    pending = list(claims)
    deadline = time.monotonic() + mail.lease_s - 2 * mail.smtp_timeout_s
    try:
        with smtp_connection(config) as smtp:
            while pending and time.monotonic() < deadline:
                _send_one(factory, smtp, pending[0], config, now, mail, report)
                pending.pop(0)  # settled; a lost connection leaves it to the handler below
    except (smtplib.SMTPException, OSError) as error:
        log.warning(
            "SMTP %s:%d unavailable (%s); %d email(s) wait for a retry",
            config.host,
            config.port,
            _without_addresses(str(error)),
            len(pending),
        )
        for claim in pending:
            _settle_failure(factory, claim, f"{type(error).__name__}: {error}", now, mail, report)
    return report


def _send_one(
    factory: sessionmaker[Session],
    smtp: smtplib.SMTP,
    claim: Claim,
    config: SmtpConfig,
    now: datetime,
    mail: MailSettings,
    report: DeliveryReport,
) -> None:
    try:
        smtp.send_message(build_message(claim, config))
    except (
        smtplib.SMTPRecipientsRefused,
        smtplib.SMTPSenderRefused,
        smtplib.SMTPDataError,
    ) as error:
        _settle_failure(factory, claim, f"{type(error).__name__}: {error}", now, mail, report)
        return
    with unit_of_work(factory) as session:
        if mark_sent(session=session, claim=claim, now=now):
            report.sent += 1
        else:
            log.error("outbox email %d was sent, but its claim had been taken over", claim.id)


def _settle_failure(
    factory: sessionmaker[Session],
    claim: Claim,
    error: str,
    now: datetime,
    mail: MailSettings,
    report: DeliveryReport,
) -> None:
    with unit_of_work(factory) as session:
        status = mark_failed(session=session, claim=claim, error=error, now=now, mail=mail)
    if status == FAILED:
        report.failed += 1
        log.error(
            "outbox email %d failed for good after %d attempts: %s",
            claim.id,
            claim.attempts,
            _without_addresses(error),
        )
    else:
        report.retrying += 1


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
