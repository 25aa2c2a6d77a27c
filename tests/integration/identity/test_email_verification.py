"""R-SEC-11 email verification and the answers that must not tell whether an email has an
account (issue #10, finding 6): sign-up of a taken email, password reset of an unknown one."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity import passwords, reset, verification
from strongroom.identity import service as identity
from strongroom.identity.models import AuditEvent, EmailVerification, PasswordReset, User
from strongroom.notify import render
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.integration.identity.conftest import (
    PASSWORD,
    PUBLIC_URL,
    T0,
    make_user,
    reload,
    signed_in,
    stepped_up,
)


def emails(factory: sessionmaker[Session], template_id: str) -> list[OutboxEmail]:
    with factory() as session:
        return list(
            session.scalars(
                select(OutboxEmail)
                .where(OutboxEmail.template_id == template_id)
                .order_by(OutboxEmail.id)
            )
        )


def link_token(email: OutboxEmail) -> str:
    """The token of the emailed link, from its fragment (as the page reads it)."""
    found = re.search(r"/app/verify-email#token=([A-Za-z0-9_-]+)", email.body_text)
    assert found is not None, email.body_text
    return found.group(1)


def sign_up(
    factory: sessionmaker[Session], settings: Settings, email: str, name: str = "Chan Tai Man"
) -> str:
    with unit_of_work(factory) as session:
        return identity.sign_up(
            session=session,
            email=email,
            password=PASSWORD,
            name=name,
            region="HK",
            settings=settings.auth,
            public_url=PUBLIC_URL,
            now=T0,
        ).user_id


def verify(factory: sessionmaker[Session], token: str, at=T0) -> None:
    with unit_of_work(factory) as session:
        verification.verify(session=session, token=token, now=at)


def refused(call, *args, **kwargs) -> DomainError:
    with pytest.raises(DomainError) as error:
        call(*args, **kwargs)
    return error.value


# --------------------------------------------------------------------------- verification


def test_sign_up_emails_a_link_and_the_welcome_follows_verification(factory, settings):
    user_id = sign_up(factory, settings, "Mei@Example.com", name="<b>Buy now</b> at spam.example")
    (link,) = emails(factory, "account.verify_email")
    assert link.to_address == "mei@example.com" and link.sensitive
    assert "spam.example" not in link.subject + link.body_text + link.body_html  # no free text
    assert emails(factory, "account.welcome") == []
    token = link_token(link)
    with factory() as session:
        stored = session.scalars(select(EmailVerification)).one()
    assert stored.token_hash != token and token not in stored.token_hash  # only its SHA-256
    assert reload(factory, User(id=user_id)).email_verified_at is None
    verify(factory, token)
    assert reload(factory, User(id=user_id)).email_verified_at == T0
    assert [e.to_address for e in emails(factory, "account.welcome")] == ["mei@example.com"]
    verify(factory, token)  # the link opened again: the same answer, no second welcome
    assert len(emails(factory, "account.welcome")) == 1


def test_bad_expired_and_outdated_tokens_are_refused(factory, settings):
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:
        first = verification.send_link(
            session=session,
            user=session.get_one(User, user.id),
            settings=settings.auth,
            public_url=PUBLIC_URL,
            now=T0,
        )
    for bad in ("", "x" * 201, "not-a-token", first[:-1]):
        assert refused(verify, factory, bad).code == "invalid_verification_token"
    late = T0 + timedelta(seconds=settings.auth.verify_token_ttl_s)
    assert refused(verify, factory, first, late).code == "invalid_verification_token"
    # the email changes: the link of the old address verifies nothing
    session_id = signed_in(factory, user)
    with unit_of_work(factory) as session:
        found = session.get_one(User, user.id)
        identity.change_email(
            session=session,
            user=found,
            new_email="alice.new@example.com",
            proof=stepped_up(session, found, settings, session_id),
            settings=settings.auth,
            public_url=PUBLIC_URL,
            now=T0,
        )
    assert refused(verify, factory, first).code == "invalid_verification_token"
    assert reload(factory, user).email_verified_at is None
    newest = emails(factory, "account.verify_email")[-1]
    assert newest.to_address == "alice.new@example.com"
    verify(factory, link_token(newest))
    assert reload(factory, user).email_verified_at is not None


def test_changing_the_email_makes_it_unverified_again(factory, settings):
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:
        found = session.get_one(User, user.id)
        token = verification.send_link(
            session=session, user=found, settings=settings.auth, public_url=PUBLIC_URL, now=T0
        )
    verify(factory, token)
    session_id = signed_in(factory, user)
    with unit_of_work(factory) as session:
        found = session.get_one(User, user.id)
        identity.change_email(
            session=session,
            user=found,
            new_email="elsewhere@example.com",
            proof=stepped_up(session, found, settings, session_id),
            settings=settings.auth,
            public_url=PUBLIC_URL,
            now=T0,
        )
    found = reload(factory, user)
    assert found.email_verified_at is None
    assert refused(verification.require_verified, found).code == "email_unverified"
    assert len(emails(factory, "account.welcome")) == 1  # no second welcome on re-verifying


def test_resend_is_capped_per_hour_and_refused_once_verified(factory, settings):
    user = make_user(factory, settings)

    def resend(at=T0) -> None:
        with unit_of_work(factory) as session:
            verification.resend(
                session=session,
                user=session.get_one(User, user.id),
                settings=settings.auth,
                public_url=PUBLIC_URL,
                now=at,
            )

    for _ in range(settings.auth.verify_emails_per_hour_max):
        resend()
    error = refused(resend)
    assert (error.code, error.status) == ("rate_limited", 429)
    assert len(emails(factory, "account.verify_email")) == settings.auth.verify_emails_per_hour_max
    resend(T0 + timedelta(minutes=61))
    verify(factory, link_token(emails(factory, "account.verify_email")[-1]))
    assert refused(resend).code == "email_already_verified"


# --------------------------------------------------------------------------- uniform sign-up


def test_a_taken_email_signs_up_the_same_and_its_owner_is_told(factory, settings, monkeypatch):
    owner = make_user(factory, settings)
    hashed: list[str] = []
    real_hash = passwords.hash_password
    monkeypatch.setattr(passwords, "hash_password", lambda p: hashed.append(p) or real_hash(p))
    fresh = sign_up(factory, settings, "someone.new@example.com")
    taken = sign_up(factory, settings, owner.email.upper())
    assert hashed == [PASSWORD, PASSWORD]  # Argon2 for both: the same time
    assert re.fullmatch(r"u_[0-9a-f]{16}", taken) and taken not in (owner.id, fresh)
    with factory() as session:
        assert session.get(User, taken) is None  # an id no account will ever have
        assert session.scalar(select(func.count()).select_from(User)) == 2
    (told,) = emails(factory, "account.sign_up_attempted")
    assert told.to_address == owner.email and told.user_id == owner.id
    assert [e.to_address for e in emails(factory, "account.verify_email")] == [
        "someone.new@example.com"
    ]
    assert reload(factory, owner).password_hash != ""  # the owner's account is untouched
    with factory() as session:
        assert passwords.verify(session.get_one(User, owner.id).password_hash, PASSWORD)


def test_the_owner_is_told_a_few_times_an_hour_at_most(factory, settings):
    owner = make_user(factory, settings)
    for _ in range(settings.auth.verify_emails_per_hour_max + 3):
        sign_up(factory, settings, owner.email)
    told = emails(factory, "account.sign_up_attempted")
    assert len(told) == settings.auth.verify_emails_per_hour_max
    with factory() as session:
        attempts = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "account.sign_up_attempted")
        )
    assert attempts == settings.auth.verify_emails_per_hour_max + 3  # each one audited


def test_sign_up_checks_the_input_the_same_for_taken_and_new_emails(factory, settings):
    owner = make_user(factory, settings)
    for email in (owner.email, "new.person@example.com"):
        with pytest.raises(DomainError) as error, unit_of_work(factory) as session:
            identity.sign_up(
                session=session,
                email=email,
                password="password123",
                name="X",
                region="HK",
                settings=settings.auth,
                public_url=PUBLIC_URL,
            )
        assert error.value.code == "weak_password"


# --------------------------------------------------------------------------- uniform reset


def test_a_reset_request_does_the_same_work_for_known_and_unknown_emails(
    factory, settings, any_db, monkeypatch
):
    """Not a timing test: the same code path runs for both, the same statements reach the
    database (but the one outbox insert: only an account is mailed) and the email is rendered
    once in each."""
    user = make_user(factory, settings)
    rendered: list[str] = []
    real_render = render.render

    def counting(template_id, context, *, anti_phishing_code):
        rendered.append(template_id)
        return real_render(template_id, context, anti_phishing_code=anti_phishing_code)

    monkeypatch.setattr(render, "render", counting)

    def statements_of(email: str) -> list[str]:
        seen: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany) -> None:
            seen.append(re.sub(r"\s+", " ", statement.split("(")[0]).strip())

        event.listen(any_db, "before_cursor_execute", record)
        try:
            with unit_of_work(factory) as session:
                reset.request_reset(
                    session=session,
                    email=email,
                    settings=settings.auth,
                    public_url=PUBLIC_URL,
                    now=T0,
                )
        finally:
            event.remove(any_db, "before_cursor_execute", record)
        return seen

    known = statements_of(user.email)
    assert rendered == ["security.password_reset"]
    unknown = statements_of("nobody@example.com")
    assert rendered == ["security.password_reset"] * 2
    outbox_insert = [s for s in known if s.startswith("INSERT INTO mail_outbox")]
    assert len(outbox_insert) == 1
    assert [s for s in known if s not in outbox_insert] == unknown
    with factory() as session:
        rows = session.scalars(select(PasswordReset).order_by(PasswordReset.created_at)).all()
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert {row.user_id for row in rows} == {user.id, None}
    assert actions[-2:] == ["password.reset_requested", "password.reset_requested"]


def test_an_unknown_emails_reset_row_opens_nothing(factory, settings):
    make_user(factory, settings)
    with unit_of_work(factory) as session:
        reset.request_reset(
            session=session,
            email="nobody@example.com",
            settings=settings.auth,
            public_url=PUBLIC_URL,
            now=T0,
        )
    with factory() as session:
        row = session.scalars(select(PasswordReset)).one()
    assert row.user_id is None and row.email == "nobody@example.com"
    with pytest.raises(DomainError) as error, unit_of_work(factory) as session:
        reset.confirm_reset(
            session=session,
            token=row.token_hash,  # not even its stored hash works as a token
            new_password="a-brand-new-passphrase-7",
            otp=None,
            settings=settings.auth,
            now=T0,
        )
    assert error.value.code == "invalid_reset_token"


def test_the_reset_link_carries_the_token_in_the_fragment(factory, settings):
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:
        reset.request_reset(
            session=session, email=user.email, settings=settings.auth, public_url=PUBLIC_URL
        )
    (email,) = emails(factory, "security.password_reset")
    link = re.search(r"https://\S+", email.body_text)
    assert link is not None and link.group(0).startswith(f"{PUBLIC_URL}/app/reset-password#token=")
    assert "?" not in link.group(0)  # nothing in the path or query for a log to keep
