"""Top-up and payout channels behind one interface (R-FUND-1, R-FUND-3).

**Top-ups.** A request to a connector answers either *confirmed now* (the ``sandbox``) or
*pending with instructions* (``Opening``): a payment reference for a bank transfer (``fps``), a
card processor's session id (``card``), a barcode valid 15 minutes for cash at a convenience
store (``store_cash``). The pending ones are confirmed later: ``fps`` and ``card`` by a signed
webhook (``POST /v1/webhooks/{connector}``, see ``funding.webhooks``), ``store_cash`` by the
store's terminal with its own service key (scope ``store_cash``). ``funding.topups`` keeps the
records and credits the ledger once.

``sandbox`` is money from nothing for the demo, development and tests. It exists only where the
settings enable it (``Settings.sandbox_enabled``: never in production, R-SEC-11), and each of
its top-ups is capped (``funding.sandbox_max_topup``). **Its failure paths are chosen by the
last two digits of the amount in minor units** (``sandbox_scenario``), so they can be tested
from outside: ``..77`` fails, ``..88`` times out (pending; the worker's next poll confirms it),
``..99`` confirms twice (credited once); anything else confirms at once, as it always did
(HK$12.77 fails, HK$12.88 stays pending until the next poll, HK$12.99 confirms twice).

**Payouts** (withdrawals, a later change) have the same shape: ``PayoutConnector.send`` and
``poll``. The ``sandbox`` payout connector decides by the destination's last account-number
digit (SPEC §13): 0-6 pay, 7 fail, 8 time out (then pay on the next poll), 9 confirm twice.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Final, Protocol

from strongroom.errors import LimitExceeded, ValidationFailed
from strongroom.money import Money, format_amount, parse_amount
from strongroom.settings import Settings

SANDBOX: Final = "sandbox"
FPS: Final = "fps"
CARD: Final = "card"
STORE_CASH: Final = "store_cash"
WEBHOOK_CONNECTORS: Final = (FPS, CARD)
"""The connectors that confirm by signed webhook (``POST /v1/webhooks/{connector}``)."""
SANDBOX_LIMIT: Final = "sandbox_topup"
"""``details.limit`` of a sandbox top-up over its cap."""


@dataclass(frozen=True, slots=True)
class Confirmation:
    confirmed: bool
    reference: str


class TopupConnector(Protocol):
    @property
    def name(self) -> str: ...

    def request(self, *, user_id: str, amount: Money, reference: str) -> Confirmation: ...


@dataclass(frozen=True, slots=True)
class SandboxConnector:
    """Confirms at once, up to ``max_topup`` (asset code -> major units) per request."""

    max_topup: dict[str, str]
    name: str = SANDBOX

    def request(self, *, user_id: str, amount: Money, reference: str) -> Confirmation:
        self.check_cap(amount)
        return Confirmation(confirmed=True, reference=f"sandbox:{reference}")

    def check_cap(self, amount: Money) -> None:
        """``limit_exceeded`` over the asset's cap (an asset without one has a cap of 0)."""
        asset = amount.asset
        cap = self.max_topup.get(asset.code)
        cap_minor = parse_amount(cap, asset.scale) if cap is not None else 0
        if amount.amount_minor > cap_minor:
            shown = format_amount(cap_minor, asset.scale)
            raise LimitExceeded(
                f"a sandbox top-up is at most {shown} {asset.code}",
                limit=SANDBOX_LIMIT,
                asset=asset.code,
                limit_amount=shown,
                left=shown,
                frees_at=None,
            )


class Scenario(StrEnum):
    """What the sandbox does with a top-up (``sandbox_scenario``)."""

    CONFIRM = "confirm"
    FAIL = "fail"
    TIME_OUT = "time_out"
    CONFIRM_TWICE = "confirm_twice"


SCENARIOS: Final = {77: Scenario.FAIL, 88: Scenario.TIME_OUT, 99: Scenario.CONFIRM_TWICE}
"""The last two digits of a sandbox top-up's amount in minor units that pick a failure path."""


def sandbox_scenario(amount: Money) -> Scenario:
    """The sandbox's answer to ``amount``: see the module's docstring."""
    return SCENARIOS.get(amount.amount_minor % 100, Scenario.CONFIRM)


class Instruction(StrEnum):
    """What the user is shown to pay a pending top-up."""

    REFERENCE = "reference"  # a bank transfer's payment reference (FPS)
    CARD_SESSION = "card_session"  # the card processor's checkout session
    BARCODE = "barcode"  # shown at the store's counter (Code 128)
    NONE = "none"  # the sandbox's timed-out top-up: nothing to do but wait


@dataclass(frozen=True, slots=True)
class Opening:
    """A pending top-up as the connector opened it: the reference it will confirm with, what
    the user does with it, and for how long it is valid."""

    reference: str
    instruction: Instruction
    valid_for: timedelta


class PendingTopupConnector(Protocol):
    """A connector that confirms later (webhook, terminal or poll)."""

    @property
    def name(self) -> str: ...

    def open(self, *, amount: Money) -> Opening: ...


REFERENCE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Payment references a person types into a banking app: no 0/O, 1/I."""


def _reference(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class FpsConnector:
    """A bank transfer by FPS: the user pays the operator's account with this reference; the
    bank's signed webhook confirms the amount actually received."""

    validity_s: int
    name: str = FPS

    def open(self, *, amount: Money) -> Opening:
        return Opening(
            _reference("SR", 10), Instruction.REFERENCE, timedelta(seconds=self.validity_s)
        )


@dataclass(frozen=True, slots=True)
class CardConnector:
    """A card processor's checkout session; the processor's signed webhook confirms."""

    validity_s: int
    name: str = CARD

    def open(self, *, amount: Money) -> Opening:
        session_id = "cs_" + secrets.token_hex(12)
        return Opening(session_id, Instruction.CARD_SESSION, timedelta(seconds=self.validity_s))


BARCODE_DIGITS: Final = 18


@dataclass(frozen=True, slots=True)
class StoreCashConnector:
    """Cash at a convenience store: a numeric barcode (Code 128) valid ``validity_s`` (15
    minutes); the store's terminal confirms the cash it took."""

    validity_s: int
    name: str = STORE_CASH

    def open(self, *, amount: Money) -> Opening:
        digits = "".join(secrets.choice(string.digits) for _ in range(BARCODE_DIGITS - 2))
        return Opening("99" + digits, Instruction.BARCODE, timedelta(seconds=self.validity_s))


@dataclass(frozen=True, slots=True)
class SandboxPendingConnector:
    """The sandbox's top-ups that do not simply confirm at once (``sandbox_scenario``)."""

    validity_s: int = 24 * 3600
    name: str = SANDBOX

    def open(self, *, amount: Money) -> Opening:
        return Opening(
            "sbx_" + secrets.token_hex(8), Instruction.NONE, timedelta(seconds=self.validity_s)
        )


def pending_connectors(settings: Settings) -> dict[str, PendingTopupConnector]:
    """The connectors that confirm later which this installation offers, by name."""
    funding = settings.funding
    found: dict[str, PendingTopupConnector] = {}
    if funding.fps.webhook_secret:
        found[FPS] = FpsConnector(validity_s=funding.fps.validity_s)
    if funding.card.webhook_secret:
        found[CARD] = CardConnector(validity_s=funding.card.validity_s)
    if funding.store_cash_enabled:
        found[STORE_CASH] = StoreCashConnector(validity_s=funding.store_cash_validity_s)
    if settings.sandbox_enabled():
        found[SANDBOX] = SandboxPendingConnector()
    return found


def webhook_secret(name: str, settings: Settings) -> str | None:
    """The shared secret of a webhook connector that is switched on; None otherwise."""
    if name not in WEBHOOK_CONNECTORS:
        return None
    secret: str = getattr(settings.funding, name).webhook_secret
    return secret or None


def available(settings: Settings) -> dict[str, TopupConnector]:
    """The channels that confirm at once this installation offers, by name (the sandbox)."""
    if not settings.sandbox_enabled():
        return {}
    return {SANDBOX: SandboxConnector(max_topup=dict(settings.funding.sandbox_max_topup))}


def channel_names(settings: Settings) -> list[str]:
    """Every top-up channel this installation offers."""
    return sorted(set(available(settings)) | set(pending_connectors(settings)))


# --------------------------------------------------------------------------- payouts


class PayoutStatus(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # no answer yet: ask again (``poll``)


@dataclass(frozen=True, slots=True)
class PayoutAnswer:
    """A payout connector's answer; ``confirmations`` > 1 when it confirms more than once (the
    caller posts the pending withdrawal once whatever the count)."""

    status: PayoutStatus
    reference: str
    confirmations: int = 1


class PayoutConnector(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, *, payout_id: str, account_number: str, amount: Money) -> PayoutAnswer: ...

    def poll(self, *, payout_id: str, account_number: str, amount: Money) -> PayoutAnswer: ...


@dataclass(frozen=True, slots=True)
class SandboxPayoutConnector:
    """SPEC §13: by the destination's last account-number digit, 0-6 pay, 7 fail, 8 time out
    (then pay on the next poll), 9 confirm twice. Stateless: ``send`` and ``poll`` decide from
    the account number alone."""

    name: str = SANDBOX

    def send(self, *, payout_id: str, account_number: str, amount: Money) -> PayoutAnswer:
        digit = _last_digit(account_number)
        reference = f"sandbox:{payout_id}"
        if digit == 7:
            return PayoutAnswer(PayoutStatus.FAILED, reference)
        if digit == 8:
            return PayoutAnswer(PayoutStatus.TIMED_OUT, reference)
        return PayoutAnswer(PayoutStatus.PAID, reference, confirmations=2 if digit == 9 else 1)

    def poll(self, *, payout_id: str, account_number: str, amount: Money) -> PayoutAnswer:
        answer = self.send(payout_id=payout_id, account_number=account_number, amount=amount)
        if answer.status == PayoutStatus.TIMED_OUT:
            return PayoutAnswer(PayoutStatus.PAID, answer.reference)
        return answer


def _last_digit(account_number: str) -> int:
    digits = [c for c in account_number if c.isdigit()]
    if not digits:
        raise ValidationFailed("an account number has digits", code="invalid_account_number")
    return int(digits[-1])


def connector(channel: object, settings: Settings) -> TopupConnector:
    """The channel named ``channel``; ``unknown_channel`` (with the channels there are) else."""
    channels = available(settings)
    if not isinstance(channel, str) or channel not in channels:
        raise unknown_channel(channel, settings)
    return channels[channel]


def unknown_channel(channel: object, settings: Settings) -> ValidationFailed:
    return ValidationFailed(
        f"unknown top-up channel {str(channel)[:32]!r}",
        code="unknown_channel",
        channels=channel_names(settings),
    )
