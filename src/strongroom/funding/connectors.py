"""Top-up channels behind one interface (R-FUND-1). Only ``sandbox`` exists so far: it confirms
at once, money from nothing, for the demo, development and tests. It exists only where the
settings enable it (``Settings.sandbox_enabled``: never in production, R-SEC-11), and each of
its top-ups is capped (``funding.sandbox_max_topup``). Real channels confirm later through a
signed webhook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from strongroom.errors import LimitExceeded, ValidationFailed
from strongroom.money import Money, format_amount, parse_amount
from strongroom.settings import Settings

SANDBOX: Final = "sandbox"
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


def available(settings: Settings) -> dict[str, TopupConnector]:
    """The channels this installation offers, by name."""
    if not settings.sandbox_enabled():
        return {}
    return {SANDBOX: SandboxConnector(max_topup=dict(settings.funding.sandbox_max_topup))}


def connector(channel: object, settings: Settings) -> TopupConnector:
    """The channel named ``channel``; ``unknown_channel`` (with the channels there are) else."""
    channels = available(settings)
    if not isinstance(channel, str) or channel not in channels:
        raise ValidationFailed(
            f"unknown top-up channel {str(channel)[:32]!r}",
            code="unknown_channel",
            channels=sorted(channels),
        )
    return channels[channel]
