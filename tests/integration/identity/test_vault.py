"""R-SEC-11: TOTP seeds are stored sealed with the vault key (AES-256-GCM, key id beside the
ciphertext): the column holds no seed, a flipped byte or a seed moved to another row does not
open, keys rotate (a retired key still opens, the current one seals), production has no
fallback key; migration 2026_12_06_0007 seals the seeds of an existing database (and opens them
again on the way down), and sign-in with 2FA works after it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta

import pyotp
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db, vault
from strongroom.db import unit_of_work
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity import totp, two_factor
from strongroom.identity.models import TotpFactor
from strongroom.settings import Settings
from tests.integration.identity.conftest import T0, make_user, seed, signed_in, stepped_up

BEFORE = "2026_12_06_0005"
AFTER = "2026_12_06_0007"
VAULT_KEY = "a-vault-key-for-tests-0123456789-abcdef"


def keys(current: str, *retired: str, production: bool = False) -> vault.Keyring:
    return vault.keyring(current, retired, secret_key="s" * 32, production=production)


# --------------------------------------------------------------------------- the vault alone


def test_sealed_values_open_only_where_they_were_sealed():
    ring = keys(VAULT_KEY)
    sealed = ring.seal("JBSWY3DPEHPK3PXP", context="identity_totp.secret:u_1")
    assert sealed.key_id.startswith("k") and sealed.ciphertext.startswith("v1.")
    assert "JBSWY3DPEHPK3PXP" not in sealed.ciphertext
    assert ring.open(sealed, context="identity_totp.secret:u_1") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(vault.VaultError, match="altered or moved"):
        ring.open(sealed, context="identity_totp.secret:u_2")  # moved to another row
    assert ring.seal("same", context="c") != ring.seal("same", context="c")  # a fresh nonce


@pytest.mark.parametrize("position", [3, 10, 40, -1])
def test_a_flipped_byte_is_detected(position):
    ring = keys(VAULT_KEY)
    sealed = ring.seal("JBSWY3DPEHPK3PXP", context="c")
    raw = bytearray(base64.urlsafe_b64decode(sealed.ciphertext[3:] + "=="))
    raw[position] ^= 0x01
    flipped = "v1." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(vault.VaultError):
        ring.open(vault.Sealed(sealed.key_id, flipped), context="c")


def test_keys_rotate_by_id():
    old = keys("the-old-vault-key-0123456789-abcdefgh")
    sealed = old.seal("seed", context="c")
    rotated = keys(VAULT_KEY, "the-old-vault-key-0123456789-abcdefgh")
    assert rotated.current_id != old.current_id and not rotated.is_current(sealed)
    assert rotated.open(sealed, context="c") == "seed"  # a retired key still opens
    assert rotated.seal("seed", context="c").key_id == rotated.current_id  # the new one seals
    with pytest.raises(vault.VaultError, match="no vault key with id"):
        keys(VAULT_KEY).open(sealed, context="c")  # the old key forgotten: refused, not garbage


def test_production_has_no_fallback_key_development_derives_one():
    production = keys("", production=True)
    with pytest.raises(vault.VaultError, match="STRONGROOM_VAULT_KEY"):
        production.seal("seed", context="c")
    development = keys("")
    assert development.current_id is not None and development.current_id.startswith("dev-")
    assert development.open(development.seal("seed", context="c"), context="c") == "seed"
    assert keys("").current_id == development.current_id  # the same secret, the same key
    settings = Settings(env="test", secret_key="test-secret-key-0123456789", vault_key=VAULT_KEY)
    assert settings.auth.vault.current_id == keys(VAULT_KEY).current_id


# --------------------------------------------------------------------------- the stored seed


def test_the_column_holds_no_seed_and_two_factor_still_works(factory, settings):
    user = make_user(factory, settings)
    session_id = signed_in(factory, user)
    with unit_of_work(factory) as session:
        found = session.get_one(type(user), user.id)
        proof = stepped_up(session, found, settings, session_id)
        secret = identity.begin_two_factor(
            session=session, user=found, proof=proof, settings=settings.auth, now=T0
        ).secret
    with factory() as session:
        stored = session.execute(text("SELECT * FROM identity_totp")).mappings().one()
    assert secret not in " ".join(str(value) for value in stored.values())
    assert stored["secret_key_id"] == settings.auth.vault.current_id
    assert seed(factory, settings, user) == secret
    with unit_of_work(factory) as session:
        found = session.get_one(type(user), user.id)
        identity.confirm_two_factor(
            session=session,
            user=found,
            otp=totp.code_at(secret, totp.time_step(T0)),
            proof=stepped_up(session, found, settings, session_id),
            settings=settings.auth,
            now=T0,
        )
    at = T0 + timedelta(minutes=1)
    with unit_of_work(factory) as session:
        identity.login(
            session=session,
            email=user.email,
            password="correct-horse-battery-9",
            otp=totp.code_at(secret, totp.time_step(at)),
            settings=settings.auth,
            now=at,
        )


def test_a_tampered_seed_fails_closed(factory, settings):
    """A seed altered in the database (or moved from another row) does not open: the check
    fails with an error, never by accepting a code, and writes nothing."""
    alice, bob = make_user(factory, settings), make_user(factory, settings, "Bob Wong")
    for user in (alice, bob):
        with unit_of_work(factory) as session:
            identity.enrol_totp_now(
                session=session,
                user=session.get_one(type(user), user.id),
                settings=settings.auth,
                now=T0,
            )
    with unit_of_work(factory) as session:  # Bob's sealed seed copied into Alice's row
        bobs = session.get_one(TotpFactor, bob.id)
        alices = session.get_one(TotpFactor, alice.id)
        alices.secret_sealed, alices.secret_key_id = bobs.secret_sealed, bobs.secret_key_id
    code = totp.code_at(seed(factory, settings, bob), totp.time_step(T0))
    with pytest.raises(vault.VaultError), unit_of_work(factory) as session:
        identity.login(
            session=session,
            email=alice.email,
            password="correct-horse-battery-9",
            otp=code,
            settings=settings.auth,
            now=T0,
        )


# --------------------------------------------------------------------------- the migration


@pytest.fixture(params=["postgresql", "sqlite"])
def old_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A database migrated to the revision before part C's (seeds in clear)."""
    if request.param == "sqlite":
        engine = db.make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
        yield engine
        engine.dispose()
        return
    yield request.getfixturevalue("bare_pg")


def migrate(engine: Engine, revision: str, keyring: vault.Keyring, *, down: bool = False) -> None:
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    config.attributes["vault_keyring"] = keyring
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_the_migration_seals_existing_seeds_and_sign_in_still_works(old_database: Engine):
    engine = old_database
    settings = Settings(
        env="test",
        database_url=engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key-0123456789",
        vault_key=VAULT_KEY,
        run_worker=False,
    )
    migrate(engine, BEFORE, settings.auth.vault)
    secret = pyotp.random_base32(length=32)
    password_hash = identity.passwords.hash_password("correct-horse-battery-9")
    with engine.begin() as connection:  # as the old code wrote them: the seed in clear
        connection.execute(
            text(
                "INSERT INTO users (id, email, password_hash, name, region, kyc_tier, created_at,"
                " two_factor_enabled_at) VALUES ('u_old', 'old@example.com', :hash, 'Old Timer',"
                " 'HK', 'unverified', :at, :at)"
            ),
            {"hash": password_hash, "at": T0},
        )
        connection.execute(
            text(
                "INSERT INTO identity_totp (user_id, secret, created_at, confirmed_at,"
                " last_used_step, failures) VALUES ('u_old', :secret, :at, :at, -1, 0)"
            ),
            {"secret": secret, "at": T0},
        )
    migrate(engine, AFTER, settings.auth.vault)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM identity_totp")).mappings().one()
        verified = connection.execute(text("SELECT email_verified_at FROM users")).scalar_one()
    assert "secret" not in row and secret not in " ".join(str(v) for v in row.values())
    assert row["secret_key_id"] == settings.auth.vault.current_id
    assert verified is not None  # registered before verification existed: verified
    factory: sessionmaker[Session] = db.make_session_factory(engine)
    with factory() as session:
        assert two_factor.secret_of(session.get_one(TotpFactor, "u_old"), settings.auth) == secret
    migrate(engine, BEFORE, settings.auth.vault, down=True)
    with engine.connect() as connection:
        back = connection.execute(text("SELECT secret FROM identity_totp")).scalar_one()
    assert back == secret


def test_an_account_sealed_by_the_migration_signs_in_at_head(old_database: Engine):
    """The old account, its seed sealed by the migration, signs in with its authenticator
    through today's code (today's schema: migrated to head)."""
    engine = old_database
    settings = Settings(
        env="test",
        database_url=engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key-0123456789",
        vault_key=VAULT_KEY,
        run_worker=False,
    )
    migrate(engine, BEFORE, settings.auth.vault)
    secret = pyotp.random_base32(length=32)
    password_hash = identity.passwords.hash_password("correct-horse-battery-9")
    with engine.begin() as connection:  # as the old code wrote them: the seed in clear
        connection.execute(
            text(
                "INSERT INTO users (id, email, password_hash, name, region, kyc_tier, created_at,"
                " two_factor_enabled_at) VALUES ('u_old', 'old@example.com', :hash, 'Old Timer',"
                " 'HK', 'unverified', :at, :at)"
            ),
            {"hash": password_hash, "at": T0},
        )
        connection.execute(
            text(
                "INSERT INTO identity_totp (user_id, secret, created_at, confirmed_at,"
                " last_used_step, failures) VALUES ('u_old', :secret, :at, :at, -1, 0)"
            ),
            {"secret": secret, "at": T0},
        )
    migrate(engine, "head", settings.auth.vault)
    factory: sessionmaker[Session] = db.make_session_factory(engine)
    with unit_of_work(factory) as session:
        identity.login(
            session=session,
            email="old@example.com",
            password="correct-horse-battery-9",
            otp=pyotp.TOTP(secret).now(),
            settings=settings.auth,
        )


def test_the_migration_needs_the_key_that_sealed(old_database: Engine):
    """Migrating down with another key fails (and leaves the seeds sealed): a wrong key never
    turns into wrong seeds."""
    right, wrong = keys(VAULT_KEY), keys("some-other-vault-key-0123456789-xyz")
    migrate(old_database, BEFORE, right)
    with old_database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, password_hash, name, region, kyc_tier, created_at)"
                " VALUES ('u_1', 'a@example.com', 'x', 'A', 'HK', 'unverified', :at)"
            ),
            {"at": T0},
        )
        connection.execute(
            text(
                "INSERT INTO identity_totp (user_id, secret, created_at, last_used_step, failures)"
                " VALUES ('u_1', 'JBSWY3DPEHPK3PXP', :at, -1, 0)"
            ),
            {"at": T0},
        )
    migrate(old_database, AFTER, right)
    with pytest.raises(vault.VaultError):
        migrate(old_database, BEFORE, wrong, down=True)
    with old_database.connect() as connection:
        assert connection.execute(text("SELECT secret_key_id FROM identity_totp")).scalar_one()


def test_production_without_a_vault_key_cannot_seal(factory, settings):
    production = Settings(
        env="production",
        database_url=settings.database_url,
        secret_key="s" * 48,
        run_worker=False,
    )
    user = make_user(factory, settings)
    with pytest.raises((vault.VaultError, DomainError)), unit_of_work(factory) as session:
        identity.enrol_totp_now(
            session=session, user=session.get_one(type(user), user.id), settings=production.auth
        )
