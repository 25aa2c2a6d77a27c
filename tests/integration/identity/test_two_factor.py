"""R-SEC-3: TOTP (RFC 6238 vectors, drift, no reuse), recovery codes, blocks and alerts, and
2FA for operators. The clock is injected: no test sleeps."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity import totp
from strongroom.identity.models import AuthToken, RecoveryCode, TotpFactor, User
from strongroom.notify.models import OutboxEmail
from strongroom.settings import Settings
from tests.integration.identity.conftest import (
    PASSWORD,
    T0,
    make_user,
    reload,
    seed,
    signed_in,
    stepped_up,
)

# RFC 6238, appendix B: (time, SHA1, SHA256, SHA512), 8 digits
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
RFC_SECRETS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_vectors(at, sha1, sha256, sha512):
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        secret = base64.b32encode(RFC_SECRETS[digest]).decode()
        assert totp.code_at(secret, at // 30, digits=8, digest=digest) == expected
        library = pyotp.TOTP(secret, digits=8, digest=getattr(hashlib, digest))
        assert library.at(at) == expected


def test_drift_of_one_step_is_accepted_two_are_not():
    secret = totp.new_secret()
    step = totp.time_step(T0)
    for offset in (-1, 0, 1):
        match, used = totp.check(
            secret, totp.code_at(secret, step + offset), now=T0, last_used_step=-1
        )
        assert (match, used) == (totp.Match.ACCEPTED, step + offset)
    for offset in (-2, 2):
        match, _ = totp.check(
            secret, totp.code_at(secret, step + offset), now=T0, last_used_step=-1
        )
        assert match is totp.Match.WRONG


def test_a_code_is_never_accepted_twice_nor_an_older_one():
    secret = totp.new_secret()
    step = totp.time_step(T0)
    code = totp.code_at(secret, step)
    assert totp.check(secret, code, now=T0, last_used_step=step)[0] is totp.Match.REUSED
    older = totp.code_at(secret, step - 1)
    assert totp.check(secret, older, now=T0, last_used_step=step)[0] is totp.Match.REUSED
    assert totp.check(secret, "12345", now=T0, last_used_step=-1)[0] is totp.Match.WRONG
    assert totp.check(secret, "abcdef", now=T0, last_used_step=-1)[0] is totp.Match.WRONG


# --------------------------------------------------------------------------- the service


def code(
    factory: sessionmaker[Session], settings: Settings, user: User, at=T0, offset: int = 0
) -> str:
    return totp.code_at(seed(factory, settings, user), totp.time_step(at) + offset)


def enrol(factory: sessionmaker[Session], settings: Settings, user: User) -> list[str]:
    session_id = signed_in(factory, user)
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        proof = stepped_up(session, found, settings, session_id)
        identity.begin_two_factor(
            session=session, user=found, proof=proof, settings=settings.auth, now=T0
        )
    first = code(factory, settings, user)  # before the next transaction: SQLite has one writer
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        proof = stepped_up(session, found, settings, session_id)
        return identity.confirm_two_factor(
            session=session, user=found, otp=first, proof=proof, settings=settings.auth, now=T0
        )


def login(
    factory: sessionmaker[Session], settings: Settings, user: User, otp: str | None, at=T0
) -> identity.IssuedToken:
    """Sign in in its own unit of work, as the router does: a refusal keeps only what the
    service kept (the wrong code's count, the block, the alert), then is raised."""
    with unit_of_work(factory) as session:
        return identity.login(
            session=session,
            email=user.email,
            password=PASSWORD,
            otp=otp,
            settings=settings.auth,
            ip="198.51.100.9",
            now=at,
        )


def refused(call, *args, **kwargs) -> DomainError:
    with pytest.raises(DomainError) as error:
        call(*args, **kwargs)
    return error.value


def outbox_count(factory: sessionmaker[Session], template_id: str) -> int:
    with factory() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxEmail)
                .where(OutboxEmail.template_id == template_id)
            )
            or 0
        )


def test_enrol_confirm_then_login_needs_a_fresh_code(factory, settings):
    user = make_user(factory, settings)
    codes = enrol(factory, settings, user)
    assert len(codes) == 10 and len(set(codes)) == 10
    with factory() as session:
        stored = session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(stored) == 10 and not set(codes) & set(stored)  # only hashes are stored
    assert reload(factory, user).two_factor_enabled_at == T0
    assert refused(login, factory, settings, user, None).code == "otp_required"
    later = T0 + timedelta(seconds=30)
    first = code(factory, settings, user, later)
    login(factory, settings, user, first, at=later)
    assert refused(login, factory, settings, user, first, at=later).code == "otp_reused"
    login(factory, settings, user, code(factory, settings, user, later, offset=1), at=later)


def test_the_enrolment_code_cannot_be_replayed_at_login(factory, settings):
    user = make_user(factory, settings)
    enrol(factory, settings, user)
    assert (
        refused(login, factory, settings, user, code(factory, settings, user)).code == "otp_reused"
    )


def test_three_wrong_codes_block_for_15_minutes_five_send_an_alert(factory, settings):
    user = make_user(factory, settings)
    enrol(factory, settings, user)
    at = T0 + timedelta(minutes=1)
    assert [refused(login, factory, settings, user, "000000", at=at).code for _ in range(2)] == [
        "invalid_otp",
        "invalid_otp",
    ]
    blocked = refused(login, factory, settings, user, "000000", at=at)
    assert blocked.code == "two_factor_blocked"
    assert blocked.details["blocked_until"] == (at + timedelta(minutes=15)).isoformat()
    during = at + timedelta(minutes=14)
    right = code(factory, settings, user, during)
    assert refused(login, factory, settings, user, right, at=during).code == "two_factor_blocked"
    assert outbox_count(factory, "security.two_factor_alert") == 0
    after = at + timedelta(minutes=16)
    refused(login, factory, settings, user, "111111", at=after)  # 4th in a row: blocked again
    after = after + timedelta(minutes=16)
    refused(login, factory, settings, user, "222222", at=after)  # 5th: the alert goes out
    assert outbox_count(factory, "security.two_factor_alert") == 1
    after = after + timedelta(minutes=16)
    login(factory, settings, user, code(factory, settings, user, after), at=after)
    with factory() as session:
        factor = session.get(TotpFactor, user.id)
        assert factor is not None and factor.failures == 0


def test_recovery_codes_work_once_each(factory, settings):
    user = make_user(factory, settings)
    codes = enrol(factory, settings, user)
    login(factory, settings, user, codes[0].upper())  # case and dashes do not matter
    assert refused(login, factory, settings, user, codes[0]).code == "invalid_otp"
    login(factory, settings, user, codes[1].replace("-", ""))


def test_disable_needs_a_valid_code(factory, settings):
    user = make_user(factory, settings)
    enrol(factory, settings, user)
    at = T0 + timedelta(minutes=5)
    session_id = signed_in(factory, user, at)
    with pytest.raises(DomainError) as error, unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        proof = stepped_up(session, found, settings, session_id, otp="123456", now=at)
        identity.disable_two_factor(
            session=session, user=found, proof=proof, settings=settings.auth
        )
    assert error.value.code == "invalid_otp"
    current = code(factory, settings, user, at)
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        proof = stepped_up(session, found, settings, session_id, otp=current, now=at)
        identity.disable_two_factor(
            session=session, user=found, proof=proof, settings=settings.auth, now=at
        )
    assert reload(factory, user).two_factor_enabled_at is None
    login(factory, settings, user, None, at=at)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(RecoveryCode)) == 0


def test_turning_2fa_on_signs_out_the_other_sessions(factory, settings):
    user = make_user(factory, settings)
    other = login(factory, settings, user, None)
    enrol(factory, settings, user)
    with factory() as session:
        row = session.get(AuthToken, other.session_id)
        assert row is not None and row.revoked_at == T0


def test_operators_need_2fa(factory, settings):
    admin = make_user(factory, settings, "Ada Admin", operator_role="admin")
    error = refused(identity.require_operator, reload(factory, admin))
    assert error.code == "two_factor_required" and error.status == 403
    enrol(factory, settings, admin)
    identity.require_operator(reload(factory, admin))
    identity.require_operator(reload(factory, admin), "admin")
    assert refused(identity.require_operator, reload(factory, admin), "support").code == (
        "forbidden"
    )
    user = make_user(factory, settings, "Bob Wong")
    assert refused(identity.require_operator, reload(factory, user)).code == "forbidden"


def test_cli_enrolment_prints_a_working_secret(factory, settings):
    with unit_of_work(factory) as session:
        op = identity.register(
            session=session,
            email="op@example.com",
            password=PASSWORD,
            name="Op",
            region="HK",
            settings=settings.auth,
            operator_role="finance",
            now=T0,
        )
        enrolled = identity.enrol_totp_now(session=session, user=op, settings=settings.auth, now=T0)
    assert enrolled.otpauth_uri.startswith("otpauth://totp/")
    identity.require_operator(reload(factory, op))
    at = T0 + timedelta(minutes=1)
    otp = pyotp.TOTP(enrolled.secret).at(at)
    login(factory, settings, op, otp, at=at)
