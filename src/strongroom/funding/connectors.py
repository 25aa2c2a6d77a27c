"""Top-up channels behind one interface (R-FUND-1). Only ``sandbox`` exists so far: it confirms
at once, for development and tests. Real channels confirm later through a signed webhook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from strongroom.errors import ValidationFailed
from strongroom.money import Money


@dataclass(frozen=True, slots=True)
class Confirmation:
    confirmed: bool
    reference: str


class TopupConnector(Protocol):
    name: str

    def request(self, *, user_id: str, amount: Money, reference: str) -> Confirmation: ...


class SandboxConnector:
    name = "sandbox"

    def request(self, *, user_id: str, amount: Money, reference: str) -> Confirmation:
        return Confirmation(confirmed=True, reference=f"sandbox:{reference}")


CONNECTORS: dict[str, TopupConnector] = {"sandbox": SandboxConnector()}


def connector(channel: object) -> TopupConnector:
    if not isinstance(channel, str) or channel not in CONNECTORS:
        raise ValidationFailed(
            f"unknown top-up channel {str(channel)[:32]!r}",
            code="unknown_channel",
            channels=sorted(CONNECTORS),
        )
    return CONNECTORS[channel]
