"""The demo's data: a few users in both regions, an operator, top-ups and transfers."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.funding import service as funding
from strongroom.identity import service as identity
from strongroom.payments import service as payments
from strongroom.settings import Settings

DEMO_PASSWORD = "demo-password-1"  # noqa: S105  (printed for the demo on purpose)

USERS = (
    ("Alice Chan", "alice@demo.strongroom.local", "HK"),
    ("Bob Wong", "bob@demo.strongroom.local", "HK"),
    ("Carol Li", "carol@demo.strongroom.local", "CN"),
)


def populate(factory: sessionmaker[Session], settings: Settings) -> list[tuple[str, str, str]]:
    registry = settings.asset_registry()
    logins: list[tuple[str, str, str]] = []
    with unit_of_work(factory) as session:
        users = {}
        for name, email, region in USERS:
            users[email] = identity.register(
                session=session,
                email=email,
                password=DEMO_PASSWORD,
                name=name,
                region=region,
                settings=settings.auth,
            )
            logins.append((f"user ({region})", email, DEMO_PASSWORD))
        admin = identity.register(
            session=session,
            email="admin@demo.strongroom.local",
            password=DEMO_PASSWORD,
            name="Demo Operator",
            region="HK",
            settings=settings.auth,
            operator_role="admin",
        )
        # Operators must use 2FA: the demo operator gets it at once, secret printed.
        totp = identity.enrol_totp_now(session=session, user=admin, settings=settings.auth)
        logins.append(
            (
                "operator (admin)",
                "admin@demo.strongroom.local",
                f"{DEMO_PASSWORD}  + TOTP secret {totp.secret}",
            )
        )
        alice, bob, carol = (users[email] for _, email, _ in USERS)
        for user, amount, asset in (
            (alice, "1000.00", "HKD"),
            (bob, "250.00", "HKD"),
            (carol, "800.00", "CNY"),
            (alice, "0.01500000", "BTC"),
        ):
            funding.topup(
                session=session, user=user, amount=registry.money(amount, asset), channel="sandbox"
            )
        payments.send(
            session=session,
            sender=alice,
            to=bob.email,
            amount=registry.money("120.50", "HKD"),
            note="dinner",
        )
        payments.send(
            session=session,
            sender=bob,
            to=alice.id,
            amount=registry.money("20.00", "HKD"),
            note="taxi",
        )
    return logins
