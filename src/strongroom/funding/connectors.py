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
With a book (``funding.sandbox_payout_book``) it also remembers what it received, so a poll
about a payout whose send never reached it answers ``unknown`` (see ``PayoutConnector``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
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
    UNKNOWN = "unknown"  # a poll about a payout id the connector never received: send it again


@dataclass(frozen=True, slots=True)
class PayoutAnswer:
    """A payout connector's answer; ``confirmations`` > 1 when it confirms more than once (the
    caller posts the pending withdrawal once whatever the count)."""

    status: PayoutStatus
    reference: str
    confirmations: int = 1


class PayoutConnector(Protocol):
    """A channel that pays money out. The contract every connector keeps:

    - ``payout_id`` is ours and **idempotent**: a ``send`` with a payout id the connector has
      already received pays nothing more and answers as the first send did (or as a ``poll``
      would). That is what lets the caller send again whenever it cannot know whether a send
      arrived (a crash between recording the attempt and the connector's receipt): a resend
      can never pay twice. A connector whose network cannot promise this is not one of ours.
    - ``poll`` asks about a payout id already sent: ``paid``, ``failed``, ``timed_out`` (no
      answer yet, ask again) or ``unknown``: the connector has no payout with this id (the send
      never reached it). ``unknown`` is never a failure: nothing was paid and nothing refused;
      the caller sends again under the same id (a bounded number of times) and never voids on
      it.
    - ``send`` never answers ``unknown``; a send that is lost on the way looks to the caller
      like ``timed_out`` (it learns the truth from the next poll).
    """

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


LOSE_ALWAYS: Final = -1
"""``SandboxPayoutBook.lose_sends``: lose every send of that payout id."""


@dataclass(frozen=True, slots=True)
class SandboxPayoutBook:
    """The sandbox payout connector with a memory, kept in files under ``folder`` (so a worker
    killed and started again, or several worker processes, see the same "bank"): a send is
    received once per payout id (the dedupe of the ``PayoutConnector`` contract: a second send
    is counted in ``sends_of`` and pays nothing), and a poll about an id it never received
    answers ``unknown``. Otherwise it answers as ``SandboxPayoutConnector`` does.

    A test makes it lose sends (``lose_sends``): a lost send is not received and looks to the
    caller like a time-out, as a send cut off on the way does."""

    folder: Path
    name: str = SANDBOX
    rules: SandboxPayoutConnector = field(default_factory=SandboxPayoutConnector)

    def _file(self, payout_id: str, kind: str) -> Path:
        digest = hashlib.sha256(payout_id.encode()).hexdigest()[:32]
        return self.folder / f"{digest}.{kind}"

    def lose_sends(self, payout_id: str, count: int = 1) -> None:
        """Lose the next ``count`` sends of ``payout_id`` (``LOSE_ALWAYS``: every one)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file(payout_id, "lose").write_text(str(count))

    def received(self, payout_id: str) -> bool:
        return self._file(payout_id, "received").exists()

    def sends_of(self, payout_id: str) -> int:
        """How many sends of ``payout_id`` reached the sandbox (lost ones not counted)."""
        path = self._file(payout_id, "sends")
        return int(path.read_text()) if path.exists() else 0

    def _lost(self, payout_id: str) -> bool:
        path = self._file(payout_id, "lose")
        if not path.exists():
            return False
        left = int(path.read_text())
        if left == LOSE_ALWAYS:
            return True
        if left > 1:
            path.write_text(str(left - 1))
        else:
            path.unlink()
        return True

    def send(self, *, payout_id: str, account_number: str, amount: Money) -> PayoutAnswer:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._lost(payout_id):
            return PayoutAnswer(PayoutStatus.TIMED_OUT, f"sandbox:{payout_id}")
        sends = self._file(payout_id, "sends")
        sends.write_text(str(self.sends_of(payout_id) + 1))
        record = self._file(payout_id, "received")
        answer = self.rules.send(payout_id=payout_id, account_number=account_number, amount=amount)
        try:  # the first send of an id is the one received: O_EXCL, so one wins across processes
            descriptor = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.poll(payout_id=payout_id, account_number=account_number, amount=amount)
        with os.fdopen(descriptor, "w") as out:
            json.dump({"payout_id": payout_id, "amount_minor": amount.amount_minor}, out)
        return answer

    def poll(self, *, payout_id: str, account_number: str, amount: Money) -> PayoutAnswer:
        if not self._file(payout_id, "received").exists():
            return PayoutAnswer(PayoutStatus.UNKNOWN, f"sandbox:{payout_id}")
        return self.rules.poll(payout_id=payout_id, account_number=account_number, amount=amount)


def payout_connector(settings: Settings) -> PayoutConnector:
    """The payout connector of this installation: the sandbox, with its book when configured."""
    book = settings.funding.sandbox_payout_book
    if book:
        return SandboxPayoutBook(Path(book))
    return SandboxPayoutConnector()


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
