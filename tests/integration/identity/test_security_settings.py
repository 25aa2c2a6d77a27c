"""R-APC-1 (anti-phishing code rules), R-SEC-5 (a security change freezes withdrawals for 24 h
and emails the user), R-SEC-6 (sessions) and R-SEC-7 (the append-only audit log)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity import audit, passwords
from strongroom.identity import service as identity
from strongroom.identity.models import AuthToken, User
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
from tests.integration.identity.test_lockout import attempt


def as_user(factory: sessionmaker[Session], user: User, work) -> None:
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        work(session, found)


def changing(
    factory: sessionmaker[Session],
    settings: Settings,
    user: User,
    work,
    *,
    password: str = PASSWORD,
    at=T0,
    session_id: str | None = None,
) -> None:
    """``work(session, user, proof)`` after the step-up (R-SEC-8) in a session of the user."""
    session_id = session_id or signed_in(factory, user, at)
    as_user(
        factory,
        user,
        lambda s, u: work(s, u, stepped_up(s, u, settings, session_id, password=password, now=at)),
    )


def set_code(
    factory, settings: Settings, user: User, code: str, at=T0, password: str = PASSWORD
) -> None:
    changing(
        factory,
        settings,
        user,
        lambda s, u, proof: identity.set_anti_phishing_code(
            session=s, user=u, code=code, proof=proof, settings=settings.auth, now=at
        ),
        at=at,
        password=password,
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


# --------------------------------------------------------------------------- R-APC-1


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "format"),
        ("1234567", "format"),
        ("ab-c", "format"),
        ("密码", "format"),
        ("ab c", "format"),
        ("abc\n", "format"),
        ("123456", "common_password"),
        ("Dragon", "common_password"),
    ],
)
def test_bad_anti_phishing_codes(factory, settings, code, reason):
    user = make_user(factory, settings)
    with pytest.raises(DomainError) as error:
        set_code(factory, settings, user, code)
    assert error.value.code == "invalid_anti_phishing_code" and error.value.status == 422
    assert error.value.details["reason"] == reason
    assert reload(factory, user).anti_phishing_code is None


def test_the_code_may_not_be_the_password(factory, settings):
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:  # an account from before the 10-character rule
        found = session.get(User, user.id)
        assert found is not None
        found.password_hash = passwords.hash_password("Zq9Xw2")
    with pytest.raises(DomainError) as error:
        set_code(factory, settings, user, "Zq9Xw2", password="Zq9Xw2")
    assert error.value.details["reason"] == "equals_password"
    set_code(factory, settings, user, "Zq9Xw3", password="Zq9Xw2")


def test_set_change_remove_each_freeze_withdrawals_and_email(factory, settings):
    user = make_user(factory, settings)
    with factory() as session:
        assert identity.withdrawals_frozen_until(session=session, user_id=user.id, now=T0) is None
    set_code(factory, settings, user, "Ab12Z9")
    with factory() as session:
        until = identity.withdrawals_frozen_until(session=session, user_id=user.id, now=T0)
    assert until == T0 + timedelta(hours=24)
    (first,) = emails(factory, "security.settings_changed")
    assert first.body_text.startswith("Anti-phishing code: Ab12Z9")
    later = T0 + timedelta(hours=30)
    with factory() as session:
        assert (
            identity.withdrawals_frozen_until(session=session, user_id=user.id, now=later) is None
        )
    set_code(factory, settings, user, "Cd34", at=later)
    changing(
        factory,
        settings,
        user,
        lambda s, u, proof: identity.remove_anti_phishing_code(
            session=s, user=u, proof=proof, settings=settings.auth, now=later + timedelta(hours=1)
        ),
    )
    assert reload(factory, user).anti_phishing_code is None
    assert reload(factory, user).withdrawals_frozen_until == later + timedelta(hours=25)
    sent = emails(factory, "security.settings_changed")
    assert len(sent) == 3 and sent[1].body_text.startswith("Anti-phishing code: Cd34")
    assert "Anti-phishing code" not in sent[2].body_text.split("\n")[0]
    with factory() as session:
        actions = [
            e.action
            for e in audit.security_events(session=session, user_id=user.id, limit=10).items
        ]
    assert actions[:3] == [
        "anti_phishing_code.removed",
        "anti_phishing_code.set",
        "anti_phishing_code.set",
    ]


def test_setting_the_same_code_again_changes_nothing(factory, settings):
    user = make_user(factory, settings)
    set_code(factory, settings, user, "Ab12Z9")
    set_code(factory, settings, user, "Ab12Z9", at=T0 + timedelta(hours=30))
    assert reload(factory, user).withdrawals_frozen_until == T0 + timedelta(hours=24)


def test_password_change_needs_the_current_one_and_signs_out_others(factory, settings):
    user = make_user(factory, settings)
    attempt(factory, settings, user.email, PASSWORD, T0)
    attempt(factory, settings, user.email, PASSWORD, T0)
    with factory() as session:
        keep, other = session.scalars(select(AuthToken.id).order_by(AuthToken.id)).all()

    def change(s, u, proof):
        identity.change_password(
            session=s,
            user=u,
            new_password="new-passphrase-42",
            proof=proof,
            settings=settings.auth,
            now=T0,
        )

    with pytest.raises(DomainError) as error:
        changing(factory, settings, user, change, password="not-my-password", session_id=keep)
    assert error.value.code == "invalid_credentials"
    changing(factory, settings, user, change, session_id=keep)
    with factory() as session:
        assert session.get(AuthToken, keep).revoked_at is None  # type: ignore[union-attr]
        assert session.get(AuthToken, other).revoked_at == T0  # type: ignore[union-attr]
    assert reload(factory, user).withdrawals_frozen_until == T0 + timedelta(hours=24)
    assert attempt(factory, settings, user.email, "new-passphrase-42", T0) == "ok"


def test_email_change_tells_the_old_and_the_new_address(factory, settings):
    user = make_user(factory, settings)
    changing(
        factory,
        settings,
        user,
        lambda s, u, proof: identity.change_email(
            session=s,
            user=u,
            new_email="Alice.New@Example.com",
            proof=proof,
            settings=settings.auth,
            public_url=PUBLIC_URL,
            now=T0,
        ),
    )
    assert reload(factory, user).email == "alice.new@example.com"
    sent = {e.to_address for e in emails(factory, "security.settings_changed")}
    assert sent == {"alice@example.com", "alice.new@example.com"}
    bob = make_user(factory, settings, "Bob Wong")
    with pytest.raises(DomainError) as error:
        changing(
            factory,
            settings,
            bob,
            lambda s, u, proof: identity.change_email(
                session=s,
                user=u,
                new_email="alice.new@example.com",
                proof=proof,
                settings=settings.auth,
                public_url=PUBLIC_URL,
                now=T0,
            ),
        )
    assert error.value.code == "email_taken"


# --------------------------------------------------------------------------- R-SEC-6


def test_sessions_list_and_revoke_only_ones_own(factory, settings):
    alice = make_user(factory, settings)
    bob = make_user(factory, settings, "Bob Wong")
    for _ in range(3):
        attempt(factory, settings, alice.email, PASSWORD, T0)
    attempt(factory, settings, bob.email, PASSWORD, T0)
    alice, bob = reload(factory, alice), reload(factory, bob)
    with factory() as session:
        mine = identity.active_sessions(session=session, user=alice, settings=settings.auth, now=T0)
        (bobs,) = identity.active_sessions(
            session=session, user=bob, settings=settings.auth, now=T0
        )
    assert len(mine) == 3 and all(s.ip == "203.0.113.5" for s in mine)
    with pytest.raises(DomainError) as error:
        as_user(
            factory,
            alice,
            lambda s, u: identity.revoke_session(session=s, user=u, session_id=bobs.id, now=T0),
        )
    assert error.value.code == "session_not_found"
    as_user(
        factory,
        alice,
        lambda s, u: identity.revoke_session(session=s, user=u, session_id=mine[0].id, now=T0),
    )
    as_user(
        factory,
        alice,
        lambda s, u: identity.revoke_other_sessions(
            session=s, user=u, keep_session_id=mine[1].id, now=T0
        ),
    )
    with factory() as session:
        left = identity.active_sessions(session=session, user=alice, settings=settings.auth, now=T0)
        assert [s.id for s in left] == [mine[1].id]
        assert session.get(AuthToken, bobs.id).revoked_at is None  # type: ignore[union-attr]
        expired = identity.active_sessions(
            session=session, user=alice, settings=settings.auth, now=T0 + timedelta(days=1)
        )
        assert expired == []


def test_each_sign_in_emails_time_ip_and_device(factory, settings):
    user = make_user(factory, settings)
    with unit_of_work(factory) as session:
        identity.login(
            session=session,
            email=user.email,
            password=PASSWORD,
            settings=settings.auth,
            ip="198.51.100.23",
            user_agent="TestPhone/1.0",
            now=T0,
        )
    (alert,) = emails(factory, "security.login_alert")
    assert "2026-11-22 10:00 UTC" in alert.body_text
    assert "198.51.100.23" in alert.body_text and "TestPhone/1.0" in alert.body_text


# --------------------------------------------------------------------------- R-SEC-7


def test_the_audit_log_is_append_only(factory, settings):
    make_user(factory, settings)
    for statement in ("UPDATE audit_events SET action = 'nothing'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), unit_of_work(factory) as session:
            session.execute(text(statement))
    with factory() as session:
        assert [e.action for e in audit.search(session=session, limit=10).items] == [
            "account.registered"
        ]


def test_audit_search_and_own_events(factory, settings):
    alice = make_user(factory, settings)
    bob = make_user(factory, settings, "Bob Wong")
    attempt(factory, settings, alice.email, "wrong-password-1", T0)
    attempt(factory, settings, alice.email, PASSWORD, T0 + timedelta(minutes=1))
    attempt(factory, settings, bob.email, PASSWORD, T0 + timedelta(minutes=2))
    bob = reload(factory, bob)
    with unit_of_work(factory) as session:
        identity.record_operator_action(
            session=session,
            operator=bob,
            method="GET",
            route="/v1/admin/x",
            path="/v1/admin/x",
            ip="10.0.0.1",
            now=T0 + timedelta(minutes=3),
        )
    with factory() as session:
        logins = audit.search(session=session, limit=10, action="login")
        assert [e.action for e in logins.items] == [
            "login.succeeded",
            "login.succeeded",
            "login.failed",
        ]
        page = audit.search(session=session, limit=2, action="login")
        rest = audit.search(session=session, limit=2, action="login", cursor=page.next_cursor)
        assert [e.id for e in page.items + rest.items] == [e.id for e in logins.items]
        assert rest.next_cursor is None
        by_actor = audit.search(session=session, limit=10, actor=bob.email)
        assert [(e.action, e.ip) for e in by_actor.items] == [("operator.api", "10.0.0.1")]
        recent = audit.search(session=session, limit=10, since=T0 + timedelta(minutes=1))
        assert len(recent.items) == 3
        mine = audit.security_events(session=session, user_id=alice.id, limit=10)
        assert {e.subject_user_id for e in mine.items} == {alice.id}
        assert [e.action for e in mine.items] == [
            "login.succeeded",
            "login.failed",
            "account.registered",
        ]
        with pytest.raises(DomainError) as error:
            audit.search(session=session, limit=10, cursor="forged")
        assert error.value.code == "invalid_cursor"
