"""R-MAIL-1/2 and R-APC-2 against a real SMTP server: every template carries the anti-phishing
code at the top of both parts; the outbox sends only committed emails, survives an SMTP outage,
backs off, gives up after its bound, and never sends one row twice with two workers."""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import strongroom.app  # noqa: F401  (every domain registers its templates on import)
from strongroom import db
from strongroom.db import unit_of_work, utcnow
from strongroom.errors import InvariantViolation
from strongroom.identity.models import User
from strongroom.notify import delivery, outbox, render, templates
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.integration.identity.conftest import (
    Inbox,
    SmtpServer,
    free_port,
    make_settings,
    make_user,
)

CODE = "Ab12Z9"
BANNER = f"Anti-phishing code: {CODE}"


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None, "both parts are required"
    return plain.get_content(), html.get_content()


def visible_html_text(html: str) -> str:
    """The text a reader sees in the HTML body, in order."""
    body = html.split("<body", 1)[1].split(">", 1)[1]
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def send(factory: sessionmaker[Session], user_id: str, template_id: str) -> int:
    with unit_of_work(factory) as session:
        user = session.get(User, user_id)
        assert user is not None
        row = outbox.send_to_user(
            session=session,
            user=user,
            template_id=template_id,
            context=dict(templates.get(template_id).sample),
        )
        return row.id


def status_of(factory: sessionmaker[Session], email_id: int) -> OutboxEmail:
    with factory() as session:
        row = session.get(OutboxEmail, email_id)
        assert row is not None
        return row


# --------------------------------------------------------------------------- R-APC-2, R-MAIL-2

ALL_TEMPLATES = [template.id for template in templates.all_templates()]


def test_registry_and_template_files_match():
    folder = Path(templates.__file__).parent / "templates"
    on_disk = {p.name.removesuffix(".txt.j2") for p in folder.glob("*.txt.j2")}
    html_on_disk = {p.name.removesuffix(".html.j2") for p in folder.glob("*.html.j2")}
    html_on_disk.discard("_layout")
    assert len(ALL_TEMPLATES) >= 6
    builtin = {t for t in ALL_TEMPLATES if (folder / f"{t}.txt.j2").exists()}
    assert on_disk == html_on_disk == builtin, "every template has a text and an HTML part"


@pytest.mark.parametrize("template_id", ALL_TEMPLATES)
def test_every_template_arrives_with_the_code_on_top_of_both_parts(
    factory, settings, smtp, template_id
):
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        found.anti_phishing_code = CODE
    email_id = send(factory, user.id, template_id)
    delivery.deliver_once(factory, settings)
    (message,) = [
        m for m in smtp.inbox.to(user.email) if m["X-Strongroom-Outbox-Id"] == str(email_id)
    ]
    assert message["X-Strongroom-Template"] == template_id
    plain, html = parts(message)
    assert plain.splitlines()[0] == BANNER
    assert visible_html_text(html).startswith(BANNER)
    assert message["Message-ID"].startswith("<outbox-")


@pytest.mark.parametrize("template_id", ALL_TEMPLATES)
def test_without_a_code_no_banner(factory, settings, smtp, template_id):
    user = make_user(factory, settings)
    email_id = send(factory, user.id, template_id)
    delivery.deliver_once(factory, settings)
    (message,) = [
        m for m in smtp.inbox.to(user.email) if m["X-Strongroom-Outbox-Id"] == str(email_id)
    ]
    assert message["X-Strongroom-Template"] == template_id
    plain, html = parts(message)
    assert "Anti-phishing code" not in plain and "Anti-phishing code" not in html
    assert plain.strip() and visible_html_text(html)


# --------------------------------------------------------------------------- R-MAIL-1


def test_a_rolled_back_transaction_sends_nothing(factory, settings, smtp):
    user = make_user(factory, settings)
    delivery.deliver_once(factory, settings)  # the welcome email
    before = len(smtp.inbox.messages)
    with pytest.raises(RuntimeError), unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        outbox.send_to_user(
            session=session,
            user=found,
            template_id="security.login_alert",
            context={"at": utcnow(), "ip": "1.2.3.4", "user_agent": "x"},
        )
        raise RuntimeError("the event failed")
    report = delivery.deliver_once(factory, settings)
    assert report.claimed == 0
    assert len(smtp.inbox.messages) == before
    with factory() as session:
        count = session.scalar(
            select(func.count())
            .select_from(OutboxEmail)
            .where(OutboxEmail.template_id == "security.login_alert")
        )
    assert count == 0


def test_emails_wait_while_smtp_is_down_and_go_out_once_it_is_back(factory, any_db):
    server = SmtpServer(free_port())  # not started: connections are refused
    settings = make_settings(any_db, server.port, backoff_base_s=10)
    user = make_user(factory, settings)
    send(factory, user.id, "account.welcome")  # (sent once the email is verified)
    t = utcnow()
    report = delivery.deliver_once(factory, settings, now=t)
    assert (report.claimed, report.sent, report.retrying) == (1, 0, 1)
    (row,) = _rows(factory)
    assert row.status == "pending" and row.attempts == 1 and row.last_error
    assert row.available_at == t + timedelta(seconds=10)
    assert delivery.deliver_once(factory, settings, now=t + timedelta(seconds=5)).claimed == 0
    report = delivery.deliver_once(factory, settings, now=t + timedelta(seconds=10))
    assert report.retrying == 1
    assert _rows(factory)[0].available_at == t + timedelta(seconds=30)  # 10 s, then 20 s
    server.start()
    try:
        report = delivery.deliver_once(factory, settings, now=t + timedelta(seconds=30))
        assert report.sent == 1
        assert [m["X-Strongroom-Template"] for m in server.inbox.to(user.email)] == [
            "account.welcome"
        ]
        assert delivery.deliver_once(factory, settings, now=t + timedelta(hours=1)).claimed == 0
    finally:
        server.stop()
    (row,) = _rows(factory)
    assert row.status == "sent" and row.sent_at is not None and row.attempts == 3


def _rows(factory: sessionmaker[Session]) -> list[OutboxEmail]:
    with factory() as session:
        return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def test_bounded_retries_then_failed_then_an_operator_retry(factory, any_db):
    server = SmtpServer(free_port())
    settings = make_settings(any_db, server.port, max_attempts=3, backoff_base_s=10)
    send(factory, make_user(factory, settings).id, "account.welcome")
    t = utcnow()
    for offset_s in (0, 10, 30):
        delivery.deliver_once(factory, settings, now=t + timedelta(seconds=offset_s))
    (row,) = _rows(factory)
    assert row.status == "failed" and row.attempts == 3
    server.start()
    try:
        assert delivery.deliver_once(factory, settings, now=t + timedelta(days=1)).claimed == 0
        with unit_of_work(factory) as session:
            outbox.requeue(session=session, email_id=row.id, now=t + timedelta(days=1))
        report = delivery.deliver_once(factory, settings, now=t + timedelta(days=1))
        assert report.sent == 1 and len(server.inbox.messages) == 1
    finally:
        server.stop()


def test_backoff_is_exponential_and_capped():
    from strongroom.settings import MailSettings

    mail = MailSettings(backoff_base_s=10, backoff_max_s=300)
    assert [delivery.backoff_s(n, mail) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(factory, settings):
    send(factory, make_user(factory, settings).id, "account.welcome")
    t = utcnow()
    with unit_of_work(factory) as session:
        first = delivery.claim_due(session=session, now=t, mail=settings.mail)
    with unit_of_work(factory) as session:
        assert delivery.claim_due(session=session, now=t, mail=settings.mail) == []
    later = t + timedelta(seconds=settings.mail.lease_s)
    with unit_of_work(factory) as session:  # the first worker died: the row comes back
        (again,) = delivery.claim_due(session=session, now=later, mail=settings.mail)
    assert again.id == first[0].id and again.token != first[0].token
    with unit_of_work(factory) as session:  # the stale claim can no longer settle the row
        assert not delivery.mark_sent(session=session, claim=first[0], now=later)


def test_secret_bodies_are_scrubbed_once_sent(factory, settings, smtp):
    user = make_user(factory, settings)
    email_id = send(factory, user.id, "security.password_reset")
    assert "sample-token" in status_of(factory, email_id).body_text
    delivery.deliver_once(factory, settings)
    row = status_of(factory, email_id)
    assert row.status == "sent" and "sample-token" not in row.body_text + row.body_html
    assert any("sample-token" in parts(m)[0] for m in smtp.inbox.to(user.email))


# --------------------------------------------------------------------------- deferred bodies

DEFERRABLE = [t.id for t in templates.all_templates() if not t.sensitive]


def defer(factory: sessionmaker[Session], user_id: str, template_id: str) -> int:
    """A deferred email (``outbox.defer_to_user``) with a placeholder swapped when written, as
    the group commit writes a receipt once its transfer has an id."""
    with unit_of_work(factory) as session:
        user = session.get_one(User, user_id)
        context = {**templates.get(template_id).sample, "transfer_id": "PLACEHOLDER1"}
        email = outbox.defer_to_user(user=user, template_id=template_id, context=context)
        row = outbox.add_prepared(session=session, email=email, replace={"PLACEHOLDER1": "t-42"})
        session.flush()
        return row.id


@pytest.mark.parametrize("template_id", DEFERRABLE)
def test_a_deferred_email_is_sent_exactly_as_if_rendered_when_written(
    factory, settings, smtp, template_id
):
    """Stored as its subject and context, rendered by the delivery worker: the email that
    arrives is the one rendering it at once would have made (SMTP's line ends aside)."""
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:
        session.get_one(User, user.id).anti_phishing_code = CODE
    email_id = defer(factory, user.id, template_id)
    stored = status_of(factory, email_id)
    assert stored.context is not None and (stored.body_text, stored.body_html) == ("", "")
    context = {"name": user.name, **templates.get(template_id).sample, "transfer_id": "t-42"}
    expected = render.render(template_id, context, anti_phishing_code=CODE)
    assert stored.subject == expected.subject
    assert outbox.content(stored) == expected
    delivery.deliver_once(factory, settings)
    (message,) = [
        m for m in smtp.inbox.to(user.email) if m["X-Strongroom-Outbox-Id"] == str(email_id)
    ]
    assert " ".join(str(message["Subject"]).split()) == expected.subject  # unfolded
    plain, html = parts(message)
    assert plain.splitlines()[0] == BANNER and visible_html_text(html).startswith(BANNER)
    arrived = (plain.replace("\r\n", "\n").strip(), html.replace("\r\n", "\n").strip())
    assert arrived == (expected.text.strip(), expected.html.strip())
    assert status_of(factory, email_id).status == "sent"


def test_a_secret_is_never_deferred(factory, settings):
    user = make_user(factory, settings)
    with pytest.raises(InvariantViolation, match="sensitive"):
        outbox.defer_to_user(
            user=user,
            template_id="security.password_reset",
            context=dict(templates.get("security.password_reset").sample),
        )


def test_an_email_that_cannot_be_rendered_fails_alone(factory, settings, smtp):
    """A stored context this code cannot render (a template variable it lacks) is marked
    failed with the reason; the sweep sends the others."""
    user = make_user(factory, settings)
    delivery.deliver_once(factory, settings)  # the welcome email
    broken = defer(factory, user.id, "payments.p2p_received")
    fine = defer(factory, user.id, "payments.p2p_received")
    with unit_of_work(factory) as session:
        row = session.get_one(OutboxEmail, broken)
        row.context = render.stored_context({"name": "A"}, anti_phishing_code=None)
    report = delivery.deliver_once(factory, settings)
    assert (report.claimed, report.sent) == (1, 1)
    failed, sent = status_of(factory, broken), status_of(factory, fine)
    assert failed.status == "failed" and failed.last_error == "cannot be rendered: UndefinedError"
    assert sent.status == "sent"
    assert [m["X-Strongroom-Outbox-Id"] for m in smtp.inbox.to(user.email)][-1] == str(fine)


@pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
def test_two_workers_never_send_one_row_twice(factory, any_db, smtp):
    settings = make_settings(any_db, smtp.port, batch_max=7)
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        for _ in range(151):
            outbox.send_to_user(session=session, user=found, template_id="account.welcome")
    errors: list[BaseException] = []

    def work() -> None:
        worker_factory = db.make_session_factory(any_db)  # each worker: its own sessions
        try:
            for _ in range(200):
                if delivery.deliver_once(worker_factory, settings).claimed == 0:
                    return
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    ids = Counter(m["X-Strongroom-Outbox-Id"] for m in smtp.inbox.messages)
    assert len(ids) == 151 and set(ids.values()) == {1}
    with factory() as session:
        statuses = session.execute(
            text("SELECT status, count(*) FROM mail_outbox GROUP BY status")
        ).all()
    assert dict(statuses) == {"sent": 151}


# --------------------------------------------------------------------------- SMTP settings


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid for a day, made with ``cryptography`` (a
    dependency already), so the TLS tests need no openssl command and never skip."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = utcnow()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_and_login_are_used(factory, any_db, tls_files):
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret-pass")

    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        settings = make_settings(any_db, port, smtp_ca_file=str(cert))
        settings = settings.model_copy(
            update={
                "smtp_starttls": True,
                "smtp_username": "mailer",
                "smtp_password": "s3cret-pass",
            }
        )
        user = make_user(factory, settings)
        send(factory, user.id, "account.welcome")
        assert delivery.deliver_once(factory, settings).sent == 1
        assert logins == [(b"mailer", b"s3cret-pass")]
        assert len(inbox.to(user.email)) == 1
    finally:
        controller.stop()


def test_settings_refuse_a_lease_shorter_than_three_timeouts():
    from pydantic import ValidationError

    from strongroom.settings import MailSettings

    with pytest.raises(ValidationError):
        MailSettings(smtp_timeout_s=20, lease_s=30)
    assert Settings(mail=MailSettings(smtp_timeout_s=10, lease_s=30)).mail.lease_s == 30


# --------------------------------------------------------------------------- write-back in groups


@dataclass
class Statements:
    """What one engine ran: its COMMITs and its UPDATE statements that settle outbox rows."""

    commits: int = 0
    settled_failed: int = 0
    settled_sent: int = 0

    def reset(self) -> None:
        self.commits = self.settled_failed = self.settled_sent = 0


@pytest.fixture
def statements(any_db: Engine) -> Iterator[Statements]:
    seen = Statements()

    def on_commit(connection: Any) -> None:
        seen.commits += 1

    def on_execute(
        connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if statement.startswith("UPDATE mail_outbox"):
            calls = len(parameters) if many else 1
            if "last_error=" in statement.replace(" ", "") and "sent_at" not in statement:
                seen.settled_failed += calls
            if "sent_at" in statement:
                seen.settled_sent += calls

    event.listen(any_db, "commit", on_commit)
    event.listen(any_db, "before_cursor_execute", on_execute)
    yield seen
    event.remove(any_db, "before_cursor_execute", on_execute)
    event.remove(any_db, "commit", on_commit)


def _send_many(factory: sessionmaker[Session], user_id: str, count: int) -> list[int]:
    return [send(factory, user_id, "account.welcome") for _ in range(count)]


def test_an_outage_settles_the_whole_sweep_in_one_statement_and_one_commit(
    factory, any_db, statements, caplog
):
    server = SmtpServer(free_port())  # not started: connections are refused
    settings = make_settings(any_db, server.port, max_attempts=3, backoff_base_s=10)
    user = make_user(factory, settings)
    older = _send_many(factory, user.id, 3)
    t = utcnow()
    delivery.deliver_once(factory, settings, now=t)
    newer = _send_many(factory, user.id, 2)

    statements.reset()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="strongroom.mail"):
        report = delivery.deliver_once(factory, settings, now=t + timedelta(seconds=10))
    assert (report.claimed, report.retrying, report.failed) == (5, 5, 0)
    assert statements.commits == 2, "one to claim, one to settle all five"
    assert statements.settled_failed == 1, "one set-based UPDATE"
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    rows = {row.id: row for row in _rows(factory)}
    for email_id in older:  # second attempt: 20 s
        row = rows[email_id]
        assert (row.status, row.attempts, row.claim_token) == ("pending", 2, None)
        assert row.available_at == t + timedelta(seconds=30)
        assert row.last_error and row.last_error.startswith("ConnectionRefusedError")
    for email_id in newer:  # first attempt: 10 s
        assert (rows[email_id].status, rows[email_id].attempts) == ("pending", 1)
        assert rows[email_id].available_at == t + timedelta(seconds=20)

    statements.reset()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="strongroom.mail"):
        report = delivery.deliver_once(factory, settings, now=t + timedelta(seconds=30))
    assert (report.claimed, report.retrying, report.failed) == (5, 2, 3)
    assert (statements.commits, statements.settled_failed) == (2, 1)
    rows = {row.id: row for row in _rows(factory)}
    assert {rows[i].status for i in older} == {"failed"}  # the third of three attempts
    assert all(rows[i].attempts == 3 for i in older)
    for email_id in newer:
        assert (rows[email_id].status, rows[email_id].attempts) == ("pending", 2)
        assert rows[email_id].available_at == t + timedelta(seconds=50)
    given_up = [r.getMessage() for r in caplog.records if "failed for good" in r.getMessage()]
    assert len(given_up) == 1 and all(str(i) in given_up[0] for i in older)


@pytest.mark.parametrize(
    ("commit_max", "commit_ms", "write_backs"),
    [(3, 10_000, 3), (50, 10_000, 1), (50, 0, 7)],
    ids=["by-count", "one-group", "by-time"],
)
def test_sent_emails_are_recorded_in_groups(
    factory, any_db, smtp, statements, commit_max, commit_ms, write_backs
):
    settings = make_settings(
        any_db, smtp.port, sent_commit_max=commit_max, sent_commit_ms=commit_ms
    )
    user = make_user(factory, settings)
    plain = _send_many(factory, user.id, 5)
    secret = [send(factory, user.id, "security.password_reset") for _ in range(2)]
    statements.reset()
    report = delivery.deliver_once(factory, settings)
    assert (report.claimed, report.sent) == (7, 7)
    assert statements.commits == 1 + write_backs, "the claim, then one per group"
    assert statements.settled_sent == write_backs
    assert len(smtp.inbox.to(user.email)) == 7
    for row in _rows(factory):
        assert row.status == "sent" and row.claim_token is None and row.sent_at is not None
    for email_id in secret:  # scrubbed in the same statement
        row = status_of(factory, email_id)
        assert "sample-token" not in row.body_text + row.body_html
    assert all("sample-token" not in status_of(factory, i).body_text for i in plain)
    assert delivery.deliver_once(factory, settings).claimed == 0


class RefusingInbox(Inbox):
    """Accepts every recipient but ``bob@``, whom it refuses for good (550)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("bob@"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_refused_and_sent_emails_share_a_write_back(factory, any_db, statements, caplog):
    inbox, port = RefusingInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = make_settings(any_db, port, max_attempts=1)
        alice = make_user(factory, settings)
        bob = make_user(factory, settings, "Bob Lee")
        sent = _send_many(factory, alice.id, 2)
        refused = _send_many(factory, bob.id, 2)
        statements.reset()
        with caplog.at_level(logging.WARNING, logger="strongroom.mail"):
            report = delivery.deliver_once(factory, settings)
    finally:
        controller.stop()
    assert (report.claimed, report.sent, report.failed) == (4, 2, 2)
    assert statements.commits == 2, "the claim, then one write-back for all four"
    assert {status_of(factory, i).status for i in sent} == {"sent"}
    for email_id in refused:
        row = status_of(factory, email_id)
        assert row.status == "failed" and row.last_error
        assert row.last_error.startswith("SMTPRecipientsRefused")
    given_up = [r.getMessage() for r in caplog.records if "failed for good" in r.getMessage()]
    assert len(given_up) == 1 and "bob@" not in given_up[0]


def test_write_back_settings_are_bounded():
    from pydantic import ValidationError

    from strongroom.settings import MailSettings

    for bad in ({"sent_commit_max": 0}, {"sent_commit_max": 1001}, {"sent_commit_ms": -1}):
        with pytest.raises(ValidationError):
            MailSettings(**bad)
    assert (MailSettings().sent_commit_max, MailSettings().sent_commit_ms) == (50, 500)


@pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
def test_rows_written_as_one_statement_come_back_with_their_own_ids(factory, any_db):
    """``outbox.insert_rows_returning_ids`` (the group commit's receipts): one id per row, in
    the rows' order, while other sessions draw from the same sequence."""
    user = make_user(factory, make_settings(any_db, free_port()))
    now = utcnow()
    rows = []
    for n in range(40):
        email = outbox.defer_to_user(
            user=user,
            template_id="payments.p2p_received",
            context={**templates.get("payments.p2p_received").sample, "transfer_id": "T"},
        )
        rows.append(outbox.prepared_row(email, replace={"T": f"t-{n}"}, now=now))
    with unit_of_work(factory) as other:  # an interleaved writer takes ids of its own
        interleaved = send(factory, user.id, "account.welcome")
        with unit_of_work(factory) as session:
            ids = outbox.insert_rows_returning_ids(session, rows)
        other.flush()
    assert len(set(ids)) == 40 and interleaved not in ids
    with factory() as session:
        for n, row_id in enumerate(ids):
            context = session.get_one(OutboxEmail, row_id).context
            assert context is not None and f'"transfer_id":"t-{n}"' in context
