"""The demo (``strongroom demo``): its data and its mail sink.

``populate`` fills a fresh database through the services, as users and operators would: users
in both regions with top-ups and transfers, an anti-phishing code, a wrong password and a
sign-in (security events), an admin and a support operator with 2FA on (their TOTP secrets are
printed), a shop (a merchant with a terminal key and its owner's portal sign-in, both printed,
and one charge from Bob), and a published proof-of-reserves audit built from the ledger, so
the Lite app, the merchant portal, the console and ``/reserves/verify`` open on something to
look at.

``MailSink`` is a local SMTP server (aiosmtpd, in this process, on 127.0.0.1 and a free port)
that keeps every message it receives in a Maildir. The demo points its SMTP settings at it, so
the outbox worker delivers over real SMTP (no "SMTP unavailable" every second), and the
console's Inbox (demo only) reads that Maildir back.
"""

from __future__ import annotations

import io
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from PIL import Image, ImageDraw
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.errors import DomainError, invariant, present
from strongroom.funding import service as funding
from strongroom.fx import service as fx
from strongroom.identity import service as identity
from strongroom.identity import verification
from strongroom.identity.audit import Origin
from strongroom.identity.models import User
from strongroom.kyc import service as kyc
from strongroom.merchants import charges
from strongroom.merchants import roles as merchant_roles
from strongroom.merchants import service as merchants
from strongroom.paycodes import service as paycodes
from strongroom.payments import service as payments
from strongroom.reserves import audit as audit_files
from strongroom.reserves import service as reserves
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.models import PorAudit
from strongroom.reserves.snapshot import from_ledger
from strongroom.settings import Settings

DEMO_PASSWORD = "demo-password-1"  # noqa: S105  (printed for the demo on purpose)
DATABASE_FILE: Final = "demo.sqlite3"
MAILDIR: Final = "demo-mail"
AUDITS: Final = "demo-por"
KYC_DOCUMENTS: Final = "demo-kyc-documents"
ANTI_PHISHING_CODE: Final = "Ab12Z9"
"""Alice's code: every email to her after it was set shows it at the top."""
ADMIN_EMAIL: Final = "admin@demo.strongroom.local"
SHOP_OWNER: Final = ("Mei Ho", "owner@demo.strongroom.local")
"""The demo shop's owner: an ordinary account, a member (owner) of the shop, for /merchant."""
SHOP_NAME: Final = "Lucky Tea House"
CHARGES: Final = (("bob", "38.50"),)
"""What the demo shop charged (payer, HKD): each a payment and its discount-rate fee."""
SUPPORT_EMAIL: Final = "support@demo.strongroom.local"
DEMO_ORIGIN: Final = Origin(ip="127.0.0.1", user_agent="strongroom demo")
RESERVES_MARGIN_PERCENT: Final = 5
SINK_HOST: Final = "127.0.0.1"
SINK_START_TRIES: Final = 5

USERS = (
    ("Alice Chan", "alice@demo.strongroom.local", "HK"),
    ("Bob Wong", "bob@demo.strongroom.local", "HK"),
    ("Carol Li", "carol@demo.strongroom.local", "CN"),
    ("Dan Zhang", "dan@demo.strongroom.local", "CN"),
    ("Erin Lau", "erin@demo.strongroom.local", "HK"),
)
TOPUPS = (
    ("alice", "1000.00", "HKD"),
    ("bob", "250.00", "HKD"),
    ("carol", "800.00", "CNY"),
    ("alice", "0.00200000", "BTC"),
    ("erin", "300.00", "HKD"),
    ("dan", "120.00", "CNY"),
    ("erin", "50.000000", "USDT"),
)
TRANSFERS = (  # sender, recipient, amount, asset, note (both in one region)
    ("alice", "bob", "120.50", "HKD", "dinner"),
    ("bob", "alice", "20.00", "HKD", "taxi"),
    ("bob", "erin", "45.00", "HKD", "concert tickets"),
    ("carol", "dan", "88.00", "CNY", "red packet"),
    ("erin", "bob", "12.30", "HKD", "coffee"),
    ("dan", "carol", "15.50", "CNY", "lunch"),
)


@dataclass(frozen=True, slots=True)
class Login:
    """One account of the demo, as printed: who, email, password and, for an operator, the
    TOTP secret their authenticator app needs."""

    who: str
    email: str
    password: str
    totp_secret: str | None = None
    api_key: str | None = None
    """A merchant terminal's ``X-Api-Key`` (then ``email`` names the shop, ``password`` is "")."""


def populate(
    factory: sessionmaker[Session], settings: Settings, *, audits_dir: Path | None = None
) -> list[Login]:
    """Fill a fresh database; with ``audits_dir``, also build and publish a PoR audit there."""
    logins: list[Login] = []
    with unit_of_work(factory) as session:
        users = {}
        for name, email, region in USERS:
            users[email.partition("@")[0]] = identity.register(
                session=session,
                email=email,
                password=DEMO_PASSWORD,
                name=name,
                region=region,
                settings=settings.auth,
                origin=DEMO_ORIGIN,
            )
            _verify_email(session, settings, users[email.partition("@")[0]])
            logins.append(Login(f"user ({region})", email, DEMO_PASSWORD))
        operators: dict[str, User] = {}
        for role, email, name in (
            ("admin", ADMIN_EMAIL, "Demo Administrator"),
            ("support", SUPPORT_EMAIL, "Demo Support"),
        ):
            # Operators must use 2FA: the demo's get it at once, their secrets printed.
            operator = identity.register(
                session=session,
                email=email,
                password=DEMO_PASSWORD,
                name=name,
                region="HK",
                settings=settings.auth,
                operator_role=role,
            )
            totp = identity.enrol_totp_now(session=session, user=operator, settings=settings.auth)
            logins.append(Login(f"operator ({role})", email, DEMO_PASSWORD, totp.secret))
            operators[role] = operator
            if role == "admin":
                _fx_rates(session, settings, operator)
        _move_money(session, settings, users)
        logins += _shop(session, settings, operators["admin"], users)
        _security_events(session, settings, users)
        _kyc_submission(session, settings, users["erin"])
    if audits_dir is not None:
        publish_audit(factory, settings, audits_dir)
    return logins


FX_RATES: Final = (  # base, quote, mid, spread in bps: what the demo's admin has set
    ("BTC", "HKD", "780000", 50),
    ("ETH", "HKD", "28000", 50),
    ("USDT", "HKD", "7.8", 10),
    ("USDC", "HKD", "7.8", 10),
    ("USD", "HKD", "7.8", 10),
    ("CNY", "HKD", "1.08", 30),
)


def _fx_rates(session: Session, settings: Settings, admin: User) -> None:
    """The demo's FX rates (R-FX-1), so the convert screen has prices from the start."""
    registry = settings.asset_registry()
    known = {asset.code for asset in registry.all()}
    for base, quote, mid, spread_bps in FX_RATES:
        if {base, quote} <= known:
            fx.set_rate(
                session=session,
                operator=admin,
                base=registry.get(base),
                quote=registry.get(quote),
                mid=mid,
                spread_bps=spread_bps,
                settings=settings.fx,
            )


def _move_money(session: Session, settings: Settings, users: dict[str, User]) -> None:
    registry = settings.asset_registry()
    for who, amount, asset in TOPUPS:
        funding.topup(
            session=session,
            user=users[who],
            amount=registry.money(amount, asset),
            channel="sandbox",
            settings=settings,
        )
    for sender, recipient, amount, asset, note in TRANSFERS:
        payments.send(
            session=session,
            sender=users[sender],
            to=users[recipient].email,
            amount=registry.money(amount, asset),
            note=note,
            settings=settings,
        )


def _shop(session: Session, settings: Settings, admin: User, users: dict[str, User]) -> list[Login]:
    """A shop (onboarded by the admin) with a terminal key and an owner who signs in to the
    portal, and a charge from Bob's payment code, as a till would make it."""
    shop = merchants.onboard(
        session=session,
        operator=admin,
        name=SHOP_NAME,
        mcc="5812",
        region="HK",
        holder_name="Lucky Tea House Ltd",
        bank_code="004",
        account_number="123456789",
        settings=settings,
        origin=DEMO_ORIGIN,
    )
    key = merchants.issue_key(
        session=session,
        operator=admin,
        merchant=shop,
        role=merchant_roles.MANAGER,
        name="counter till",
        origin=DEMO_ORIGIN,
    )
    name, email = SHOP_OWNER
    owner = identity.register(
        session=session,
        email=email,
        password=DEMO_PASSWORD,
        name=name,
        region="HK",
        settings=settings.auth,
        origin=DEMO_ORIGIN,
    )
    _verify_email(session, settings, owner)
    merchants.add_member(
        session=session,
        operator=admin,
        merchant=shop,
        user=owner,
        role=merchant_roles.OWNER,
        origin=DEMO_ORIGIN,
    )
    registry = settings.asset_registry()
    for payer, amount in CHARGES:
        code = paycodes.issue_code(
            session=session,
            user=users[payer],
            settings=settings.payment_codes,
            keyring=settings.auth.vault,
        ).code
        found = charges.payer_from(
            session=session,
            merchant=shop,
            settings=settings,
            payment_code=code,
            token=None,
            emv_payload=None,
        )
        charges.charge(
            session=session,
            merchant=shop,
            payer=found,
            amount=registry.money(amount, merchants.currency_of(shop)),
            settings=settings,
            assets=registry,
            actor=key.id,
        )
    return [
        Login("merchant owner", email, DEMO_PASSWORD),
        Login("merchant terminal", SHOP_NAME, "", api_key=key.key),
    ]


def _kyc_submission(session: Session, settings: Settings, user: User) -> None:
    """Erin's primary verification, waiting in the console's KYC queue: two drawn "photos" of
    an identity card, sealed in the vault like any upload."""
    files = {kind: _drawn_card(f"{user.name} · {kind}") for kind in ("front", "back")}
    kyc.submit(
        session=session,
        user=user,
        application=kyc.Application(
            level="primary",
            document_type="id_card",
            document_country="HK",
            legal_name=user.name,
            document_number="D123456(7)",
            date_of_birth="1994-07-01",
            files=files,
        ),
        settings=settings.kyc,
        vault=kyc.vault_for(settings.kyc, settings.auth.vault),
        origin=DEMO_ORIGIN,
    )


def _drawn_card(label: str) -> bytes:
    card = Image.new("RGB", (640, 400), (226, 239, 235))
    drawing = ImageDraw.Draw(card)
    drawing.rounded_rectangle((16, 16, 624, 384), radius=24, outline=(15, 91, 79), width=6)
    drawing.rectangle((48, 96, 208, 296), fill=(180, 200, 194))
    drawing.text((240, 110), "DEMO IDENTITY CARD", fill=(15, 91, 79))
    drawing.text((240, 160), label, fill=(28, 35, 33))
    out = io.BytesIO()
    card.save(out, format="PNG")
    return out.getvalue()


def _verify_email(session: Session, settings: Settings, user: User) -> None:
    """The demo's users verified their email by its link (R-SEC-11), as anyone does."""
    token = verification.send_link(
        session=session,
        user=user,
        settings=settings.auth,
        public_url=settings.mail.public_url,
        origin=DEMO_ORIGIN,
    )
    verification.verify(session=session, token=token, origin=DEMO_ORIGIN)


def _security_events(session: Session, settings: Settings, users: dict[str, User]) -> None:
    """An anti-phishing code for Alice (set in a session of hers, with her password again:
    R-SEC-8), then her sign-in, whose email shows the code; a wrong password for Bob."""
    alice, bob = users["alice"], users["bob"]
    earlier = identity.issue_token(
        session=session,
        user=alice,
        ttl_s=settings.auth.token_ttl_s,
        ip=DEMO_ORIGIN.ip,
        user_agent=DEMO_ORIGIN.user_agent,
    )
    proof = identity.step_up(
        session=session,
        user=alice,
        session_id=earlier.session_id,
        password=DEMO_PASSWORD,
        otp=None,
        settings=settings.auth,
        origin=DEMO_ORIGIN,
    )
    identity.set_anti_phishing_code(
        session=session,
        user=alice,
        code=ANTI_PHISHING_CODE,
        proof=proof,
        settings=settings.auth,
        origin=DEMO_ORIGIN,
    )
    identity.login(
        session=session,
        email=alice.email,
        password=DEMO_PASSWORD,
        settings=settings.auth,
        ip=DEMO_ORIGIN.ip,
        user_agent=DEMO_ORIGIN.user_agent,
    )
    try:
        identity.login(
            session=session,
            email=bob.email,
            password="not-" + DEMO_PASSWORD,
            settings=settings.auth,
            ip=DEMO_ORIGIN.ip,
            user_agent=DEMO_ORIGIN.user_agent,
        )
    except DomainError as refused:  # the wrong password is the point: its event stays
        invariant(refused.code == "invalid_credentials", "a wrong password is refused")


def publish_audit(factory: sessionmaker[Session], settings: Settings, audits_dir: Path) -> PorAudit:
    """Build a proof-of-reserves audit of every wallet now and publish it with reserves a
    little above the liabilities, as ``strongroom por build --from-db`` and ``por publish``."""
    scales = {asset.code: asset.scale for asset in settings.asset_registry().all()}
    with factory() as session:
        try:
            snapshot = from_ledger(session=session, scales=scales)
        finally:
            session.rollback()
    created_at = datetime.now(UTC).replace(microsecond=0)
    audit_id = audit_files.default_audit_id(created_at)
    directory = (audits_dir / audit_id).resolve()
    built = build(
        snapshot,
        directory,
        secret=audit_files.new_secret(),
        audit_id=audit_id,
        created_at=created_at,
        options=BuildOptions(workers=1),
    )
    lines = [
        reserves.ReserveLine(
            asset=asset.code,
            amount_minor=total + total * RESERVES_MARGIN_PERCENT // 100,
            source=f"demo bank statement ({asset.code})",
            evidence_sha256=None,
            as_of=created_at.date(),
        )
        for asset, total in zip(built.assets, built.totals, strict=True)
        if total > 0
    ]
    with unit_of_work(factory) as session:
        return reserves.publish(
            session=session, audit=built, tree_dir=str(directory), reserves=lines
        )


def fresh_directory(directory: Path, *, database: bool = True) -> None:
    """Remove the previous demo's mail and audits from ``directory`` (only those), and its
    SQLite database unless ``database`` is False (the demo was given another database)."""
    directory.mkdir(parents=True, exist_ok=True)
    if database:
        for suffix in ("", "-wal", "-shm"):
            (directory / f"{DATABASE_FILE}{suffix}").unlink(missing_ok=True)
    for name in (MAILDIR, AUDITS, KYC_DOCUMENTS):
        shutil.rmtree(directory / name, ignore_errors=True)


# --------------------------------------------------------------------------- the mail sink


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class MailSink:
    """An SMTP server on ``127.0.0.1`` (a free port), in this process, that stores every
    message it accepts in the Maildir ``maildir`` (created if missing)."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.host = SINK_HOST
        self._controller: Controller | None = None

    @property
    def port(self) -> int:
        return int(present(self._controller, "the mail sink is not running").port)

    def start(self) -> MailSink:
        invariant(self._controller is None, "the mail sink runs already")
        for folder in ("tmp", "new", "cur"):  # a Maildir; mailbox only makes them for a new path
            (self.maildir / folder).mkdir(parents=True, exist_ok=True)
        for attempt in range(SINK_START_TRIES):  # a free port can be taken before we bind it
            controller = Controller(
                Mailbox(self.maildir),
                hostname=self.host,
                port=_free_port(self.host),
                server_hostname="demo.strongroom.local",
            )
            try:
                controller.start()
            except (OSError, RuntimeError):
                if attempt == SINK_START_TRIES - 1:
                    raise
                continue
            self._controller = controller
            break
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def smtp_settings(settings: Settings, sink: MailSink, public_url: str) -> Settings:
    """``settings`` with SMTP pointed at ``sink`` (plain SMTP, no login) and the links in
    emails pointed at the demo's address."""
    mail = settings.mail.model_copy(update={"public_url": public_url})
    return settings.model_copy(
        update={
            "smtp_host": sink.host,
            "smtp_port": sink.port,
            "smtp_starttls": False,
            "smtp_username": "",
            "smtp_password": "",
            "mail": mail,
        }
    )
