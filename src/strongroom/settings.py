"""One typed settings object (SPEC P5/P6): environment variables ``STRONGROOM_*`` and a TOML
file named by ``STRONGROOM_CONFIG`` (same keys, lower case, without the prefix)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from strongroom import vault
from strongroom.errors import DomainError, present
from strongroom.money import BUILTIN_ASSETS, Asset, AssetRegistry, parse_amount


class AssetSetting(BaseModel):
    code: str
    scale: int = Field(ge=0, le=18)


class LedgerLimits(BaseModel):
    """Bounds on ledger work (P5)."""

    batch_max_transfers: int = Field(default=8000, ge=1, le=100_000)
    # single transfers from concurrent requests are committed together, up to this many
    group_commit_max: int = Field(default=256, ge=1, le=8000)
    # batches applied at once per server process (each its own thread and connection): while
    # one waits on PostgreSQL, the next is read and prepared (PostgreSQL only; SQLite has one
    # writer at a time)
    group_commit_threads: int = Field(default=2, ge=1, le=16)
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=500, ge=1, le=10_000)
    pending_timeout_max_s: int = Field(default=7 * 24 * 3600, ge=1)
    expire_batch_max: int = Field(default=1000, ge=1)
    export_rows_max: int = Field(default=100_000, ge=1)
    note_max_chars: int = Field(default=140, ge=0)
    # issue #14: plain POST /v1/transfers requests skip FastAPI on PostgreSQL (api.lane)
    fast_lane: bool = True
    # issue #14: the server's garbage-collector thresholds (gc.set_threshold) while it runs. At
    # Python's (700, 10, 10), 16 batches of 8,000 transfers in flight cost ~25 % of the GIL in
    # collections (each full one scanned every live batch while one of them held its locks);
    # batches then went 15.9-17.1k/s, against 18.6-22.9k/s at these. Reference counting frees
    # everything that is not in a cycle either way
    gc_thresholds: tuple[int, int, int] = (20_000, 20, 20)

    @field_validator("gc_thresholds")
    @classmethod
    def _gc_thresholds(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if not 1 <= value[0] <= 10_000_000 or not all(1 <= v <= 1000 for v in value[1:]):
            raise ValueError("gc thresholds are (1-10,000,000, 1-1,000, 1-1,000)")
        return value


class AuthSettings(BaseModel):
    token_ttl_s: int = Field(default=12 * 3600, ge=60)
    password_min_chars: int = Field(default=10, ge=8)
    password_max_chars: int = Field(default=256, ge=16)
    # R-SEC-2 lockouts: counted per email string, so unknown emails behave the same
    lockout_threshold: int = Field(default=5, ge=1, le=100)
    lockout_first_s: int = Field(default=2 * 3600, ge=1)
    lockout_repeat_s: int = Field(default=24 * 3600, ge=1)
    # R-SEC-3 TOTP: 6 digits, 30 s, one step of drift; blocks and alerts on wrong codes
    totp_issuer: str = Field(default="Strongroom", min_length=1, max_length=40)
    totp_block_after: int = Field(default=3, ge=1, le=100)
    totp_block_s: int = Field(default=15 * 60, ge=1)
    totp_alert_after: int = Field(default=5, ge=1, le=100)
    recovery_codes: int = Field(default=10, ge=1, le=50)
    # the web's two-step sign-in: how long a right password waits for its 2FA code (single use)
    sign_in_pending_ttl_s: int = Field(default=3 * 60, ge=30, le=15 * 60)
    # R-SEC-4 password reset, R-SEC-5 withdrawal freeze after a security change
    reset_token_ttl_s: int = Field(default=30 * 60, ge=60, le=24 * 3600)
    reset_emails_per_hour_max: int = Field(default=3, ge=1, le=100)
    security_freeze_s: int = Field(default=24 * 3600, ge=0)
    # R-SEC-11 email verification: the emailed token's life, and emails a user may ask for an hour
    verify_token_ttl_s: int = Field(default=48 * 3600, ge=300, le=14 * 24 * 3600)
    verify_emails_per_hour_max: int = Field(default=3, ge=1, le=100)
    # R-SEC-8 step-up: wrong passwords in a row that sign the session out (sign-in's lock stays)
    step_up_failures_max: int = Field(default=5, ge=1, le=100)
    # R-SEC-6/7 pages of sessions and audit events
    sessions_max: int = Field(default=100, ge=1, le=1000)
    audit_page_size_default: int = Field(default=50, ge=1)
    audit_page_size_max: int = Field(default=200, ge=1, le=1000)
    # the vault's keys (R-SEC-11), attached by ``Settings`` from its vault and secret keys
    _keyring: vault.Keyring | None = PrivateAttr(default=None)

    @property
    def vault(self) -> vault.Keyring:
        """The keyring that seals secrets at rest (TOTP seeds): see ``strongroom.vault``."""
        return present(self._keyring, "AuthSettings of a Settings object carry the vault")


class MailSettings(BaseModel):
    """The email outbox and its SMTP delivery worker (R-MAIL-1). SMTP host, port, STARTTLS and
    credentials are the top-level ``smtp_*`` settings (SPEC §13)."""

    deliver: bool = True
    public_url: str = Field(default="http://127.0.0.1:8000", max_length=200)
    smtp_timeout_s: float = Field(default=20.0, gt=0, le=300)
    smtp_ca_file: str = ""
    batch_max: int = Field(default=50, ge=1, le=1000)
    max_attempts: int = Field(default=12, ge=1, le=100)
    backoff_base_s: float = Field(default=10.0, gt=0)
    backoff_max_s: float = Field(default=3600.0, gt=0)
    lease_s: int = Field(default=300, ge=10)
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    sent_commit_max: int = Field(default=50, ge=1, le=1000)
    """Results written back in one transaction once this many wait: also how many accepted
    emails a crash before the write-back can repeat (each with its fixed Message-ID)."""
    sent_commit_ms: int = Field(default=500, ge=0, le=10_000)
    """...or once the oldest waiting result is this old (0: after every email)."""
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=200, ge=1, le=1000)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> MailSettings:
        # A worker stops sending when less than two timeouts of its lease are left; a lease
        # shorter than that could let a second worker claim a row that is still being sent.
        if self.lease_s < 3 * self.smtp_timeout_s:
            raise ValueError("mail.lease_s must be at least 3 x mail.smtp_timeout_s")
        return self


ENVIRONMENTS: Final = ("demo", "development", "test", "production")
SANDBOX_ENVIRONMENTS: Final = frozenset({"demo", "development", "test"})
"""Where the ``sandbox`` top-up channel (money from nothing) exists unless a setting says not."""
DEFAULT_SECRET_KEY: Final = "dev-secret-change-me"  # noqa: S105  (refused in production)
KNOWN_SECRETS: Final = frozenset({DEFAULT_SECRET_KEY, "change-me", "changeme", "secret"})
"""Values production refuses for the secret key and the vault key (the defaults, the obvious)."""
PRODUCTION_SECRET_MIN_CHARS: Final = 32
SECRET_HINT: Final = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"  # noqa: S105
SANDBOX_MAX_TOPUP: Final = {
    # about HK$50,000 per request, per asset in its major unit (no FX rates exist yet)
    "HKD": "50000",
    "CNY": "45000",
    "USD": "6400",
    "USDT": "6400",
    "USDC": "6400",
    "BTC": "0.07",
    "ETH": "2",
    "PTS": "50000",
}


class WebhookConnectorSettings(BaseModel):
    """A connector that confirms by signed webhook: its shared secret (empty: the channel is not
    offered) and how long its payment instructions stay valid."""

    webhook_secret: str = Field(default="", max_length=256)
    validity_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)


class FundingSettings(BaseModel):
    """Top-up channels (R-FUND-1). The ``sandbox`` channel confirms at once: money from nothing,
    for the demo, development and tests. ``sandbox_enabled`` unset: on in those environments,
    off in production, where setting it true is refused (R-SEC-11). Each sandbox top-up is
    capped per request (``sandbox_max_topup``: the asset's major units), so not even the demo
    can push an account toward its column's limit."""

    sandbox_enabled: bool | None = None
    sandbox_max_topup: dict[str, str] = Field(default_factory=lambda: dict(SANDBOX_MAX_TOPUP))
    # Connectors that confirm later (``funding.topups``). ``fps`` and ``card`` are offered only
    # with their webhook's secret (HMAC-SHA256, ``POST /v1/webhooks/{connector}``); the store
    # terminal confirms cash with a ``store_cash`` service key, so that channel is switched on.
    fps: WebhookConnectorSettings = Field(
        default_factory=lambda: WebhookConnectorSettings(validity_s=24 * 3600)
    )
    card: WebhookConnectorSettings = Field(
        default_factory=lambda: WebhookConnectorSettings(validity_s=30 * 60)
    )
    store_cash_enabled: bool = False
    store_cash_validity_s: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    # a webhook's timestamp may be this far from the server's clock, either way (replays)
    webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)
    webhook_body_max_bytes: int = Field(default=64 * 1024, ge=256, le=1024 * 1024)
    # A purchase of crypto paid in fiat (``funding.purchases``) holds its quote's price this long
    # for the payment to arrive (the operator's market risk); a payment after it is credited in
    # the fiat paid, never at a stale price.
    purchase_hold_s: int = Field(default=30 * 60, ge=60, le=24 * 3600)
    # requested top-ups past their validity that the worker expires at most per sweep
    expire_batch_max: int = Field(default=500, ge=1, le=10_000)
    # A payout the connector answers "unknown reference" about is sent again under the same
    # payout id (connectors dedupe by it) up to this many sends in all; then it is left pending
    # for an operator (``withdrawals.service``).
    payout_sends_max: int = Field(default=5, ge=1, le=100)
    # A folder where the sandbox payout connector keeps the payouts it received, so that it
    # answers polls as a real connector does ("unknown reference" for a send it never got);
    # empty: the stateless sandbox of SPEC §13 (``funding.connectors.payout_connector``).
    sandbox_payout_book: str = Field(default="", max_length=1024)


class KycSettings(BaseModel):
    """KYC submissions and their documents (R-KYC-2..5). Each uploaded file is at most
    ``document_max_bytes`` (10 MB) and an image at most ``image_pixels_max`` pixels (a
    decompression bomb is refused before it is decoded); a request holds at most
    ``documents_per_request_max`` files, so its body may be that many files plus
    ``form_overhead_bytes``. Documents are sealed (AES-GCM, the vault key) and written under
    ``documents_dir`` (empty: ``kyc-documents`` in the data directory). The review queue's
    target is ``review_target_hours`` (24): older pending submissions are overdue."""

    document_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    image_pixels_max: int = Field(default=50_000_000, ge=10_000)
    documents_per_request_max: int = Field(default=3, ge=1, le=10)
    form_overhead_bytes: int = Field(default=256 * 1024, ge=16 * 1024)
    documents_dir: str = ""
    review_target_hours: int = Field(default=24, ge=1, le=24 * 30)
    queue_page_max: int = Field(default=200, ge=1, le=1000)
    history_max: int = Field(default=50, ge=1, le=500)

    def upload_request_max_bytes(self) -> int:
        return self.documents_per_request_max * self.document_max_bytes + self.form_overhead_bytes

    def documents_path(self) -> Path:
        if self.documents_dir:
            return Path(self.documents_dir)
        return Path(platformdirs.user_data_dir("strongroom")) / "kyc-documents"


class BankingSettings(BaseModel):
    """Linked bank accounts (R-FUND-2): how many a user may link, and the digits a bank code
    and an account number may have (HK: a 3-digit bank code and 6-12 digits; mainland China: a
    12-digit CNAPS code and a card or account number of up to 19 digits)."""

    accounts_max: int = Field(default=5, ge=1, le=50)
    bank_code_min_digits: int = Field(default=3, ge=1, le=12)
    bank_code_max_digits: int = Field(default=12, ge=1, le=12)
    account_number_min_digits: int = Field(default=6, ge=1, le=34)
    account_number_max_digits: int = Field(default=19, ge=1, le=34)


class PrivacySettings(BaseModel):
    """Personal data (issue #11 item 7): how long an erased user's financial records keep
    their remaining personal references before ``strongroom privacy purge`` deletes them (7
    years by default), and the bound on a synchronous data export."""

    retention_days: int = Field(default=7 * 365 + 2, ge=1, le=100 * 366)
    export_max_rows: int = Field(default=100_000, ge=10)
    export_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)


def _plain_decimal(value: str) -> None:
    try:
        parse_amount(value, 18, allow_zero=True)
    except DomainError as error:
        raise ValueError(str(error)) from None


class TierLimits(BaseModel):
    """One KYC tier's row of SPEC §4's limits table. Amounts are decimal strings in
    ``LimitsSettings.currency`` (the BTC column in BTC); ``None`` (or "none") means no limit."""

    model_config = ConfigDict(frozen=True)

    per_transaction: str | None
    per_day: str | None
    per_year: str | None
    max_balance: str | None
    withdrawals_per_day: int | None = Field(ge=0)
    crypto_withdrawals_24h_btc: str | None

    @field_validator(
        "per_transaction",
        "per_day",
        "per_year",
        "max_balance",
        "withdrawals_per_day",
        "crypto_withdrawals_24h_btc",
        mode="before",
    )
    @classmethod
    def _none(cls, value: object) -> object:
        # "none" (SPEC's word, and what an environment variable can say) is no limit
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

    @field_validator(
        "per_transaction", "per_day", "per_year", "max_balance", "crypto_withdrawals_24h_btc"
    )
    @classmethod
    def _decimal(cls, value: str | None) -> str | None:
        if value is not None:
            _plain_decimal(value)
        return value


DEFAULT_TIERS: Final = {
    "unverified": TierLimits(
        per_transaction="2000",
        per_day="3000",
        per_year="25000",
        max_balance="3000",
        withdrawals_per_day=0,
        crypto_withdrawals_24h_btc="10",
    ),
    "primary": TierLimits(
        per_transaction="5000",
        per_day="10000",
        per_year="100000",
        max_balance="100000",
        withdrawals_per_day=10,
        crypto_withdrawals_24h_btc="80",
    ),
    "advanced": TierLimits(
        per_transaction="5000",
        per_day="20000",
        per_year="200000",
        max_balance="100000",
        withdrawals_per_day=10,
        crypto_withdrawals_24h_btc="200",
    ),
    "institutional": TierLimits(
        per_transaction="1000000",
        per_day="5000000",
        per_year=None,
        max_balance=None,
        withdrawals_per_day=50,
        crypto_withdrawals_24h_btc="400",
    ),
}


class AssetPrice(BaseModel):
    """The operator's reference price of one unit of an asset, for limits only: its value in
    the limits currency (HKD) and in BTC, and whether it is ``fiat`` or ``crypto``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["fiat", "crypto"]
    hkd: str
    btc: str

    @field_validator("hkd", "btc")
    @classmethod
    def _decimal(cls, value: str) -> str:
        _plain_decimal(value)
        return value


DEFAULT_PRICES: Final = {
    # reference prices for the limits (R-LIMIT-1), not quotes: BTC at HK$800,000; the
    # operator's FX mid rates take precedence where they join an asset to HKD or BTC
    # (limits.service.use_reference_prices, registered by strongroom.fx.service)
    "HKD": AssetPrice(kind="fiat", hkd="1", btc="0.00000125"),
    "CNY": AssetPrice(kind="fiat", hkd="1.08", btc="0.00000135"),
    "USD": AssetPrice(kind="fiat", hkd="7.8", btc="0.00000975"),
    "BTC": AssetPrice(kind="crypto", hkd="800000", btc="1"),
    "ETH": AssetPrice(kind="crypto", hkd="28000", btc="0.035"),
    "USDT": AssetPrice(kind="crypto", hkd="7.8", btc="0.00000975"),
    "USDC": AssetPrice(kind="crypto", hkd="7.8", btc="0.00000975"),
    # loyalty points are worth nothing toward a limit
    "PTS": AssetPrice(kind="fiat", hkd="0", btc="0"),
}


class LimitsSettings(BaseModel):
    """Tier limits (SPEC §4, R-LIMIT-1, R-KYC-6) and T+N risk holds (R-TN-1), used by
    ``strongroom.limits``. ``tiers`` and ``prices`` set in part (one tier's ``per_day``, one
    asset) keep the defaults of the rest, e.g. ``STRONGROOM_LIMITS__TIERS__UNVERIFIED__PER_DAY``.
    ``prices`` must name every asset. ``tn_high_risk_*``: users whose KYC tier or nationality
    (ISO 3166 alpha-2) is listed hold fiat-channel purchases for ``tn_high_risk_hours``."""

    currency: str = "HKD"
    tiers: dict[str, TierLimits] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    prices: dict[str, AssetPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    tn_hours: int = Field(default=24, ge=0, le=24 * 365)
    tn_high_risk_hours: int = Field(default=72, ge=0, le=24 * 365)
    tn_high_risk_tiers: list[str] = Field(default_factory=list)
    tn_high_risk_nationalities: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _partial_tables_keep_defaults(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, defaults in (("tiers", DEFAULT_TIERS), ("prices", DEFAULT_PRICES)):
            given = merged.get(name)
            if isinstance(given, dict):
                table: dict[str, object] = {k: v.model_dump() for k, v in defaults.items()}
                for key, value in given.items():
                    base = table.get(key)
                    if isinstance(value, dict) and isinstance(base, dict):
                        table[key] = {**base, **value}
                    else:
                        table[key] = value
                merged[name] = table
        return merged

    def tier(self, name: str) -> TierLimits:
        """The row of tier ``name``; an unknown tier is treated as ``unverified``."""
        return self.tiers.get(name) or self.tiers["unverified"]


class RateLimitRule(BaseModel):
    """At most ``limit`` requests per key in a window of ``window_s`` seconds that starts at the
    key's first request (``strongroom.ratelimit``)."""

    model_config = ConfigDict(frozen=True)

    limit: int = Field(ge=1, le=1_000_000)
    window_s: int = Field(ge=1, le=7 * 24 * 3600)


class RateLimitSettings(BaseModel):
    """R-SEC-9 throttling, counted in the database so that every server process shares the
    counts. ``STRONGROOM_RATE_LIMITS_ENABLED=false`` (or ``STRONGROOM_RATE_LIMITS__ENABLED``)
    turns every limit off (load tests, local benchmarks); production refuses to start with it.
    A rule is set as ``STRONGROOM_RATE_LIMITS__LOGIN_PER_ADDRESS__LIMIT=10`` (and ``__WINDOW_S``).

    Sign-in and 2FA attempts that succeed give their count back, so the per-address sign-in
    limit counts wrong guesses (and attempts still running): 10 in 15 minutes lets one address
    lock (R-SEC-2: 5 wrong passwords) at most 2 accounts it does not own per 15 minutes."""

    enabled: bool = True
    login_per_address: RateLimitRule = RateLimitRule(limit=10, window_s=15 * 60)
    login_per_account: RateLimitRule = RateLimitRule(limit=10, window_s=15 * 60)
    registration_per_address: RateLimitRule = RateLimitRule(limit=5, window_s=3600)
    password_reset_per_address: RateLimitRule = RateLimitRule(limit=10, window_s=3600)
    password_reset_per_account: RateLimitRule = RateLimitRule(limit=5, window_s=3600)
    two_factor_per_address: RateLimitRule = RateLimitRule(limit=10, window_s=15 * 60)
    two_factor_per_account: RateLimitRule = RateLimitRule(limit=10, window_s=15 * 60)
    verification_resend_per_address: RateLimitRule = RateLimitRule(limit=10, window_s=3600)
    verification_resend_per_account: RateLimitRule = RateLimitRule(limit=5, window_s=3600)
    # hooks for later issues: merchants' charges with a payment code, connectors' webhooks
    payment_code_charges_per_account: RateLimitRule = RateLimitRule(limit=30, window_s=60)
    webhooks_per_address: RateLimitRule = RateLimitRule(limit=600, window_s=60)
    # FX quotes a user may ask for (each is a row; the convert screen re-quotes every 10 s)
    fx_quotes_per_account: RateLimitRule = RateLimitRule(limit=60, window_s=60)
    # buckets whose window ended that the worker deletes at most per sweep
    sweep_batch_max: int = Field(default=1000, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _rules_keep_their_defaults(cls, data: object) -> object:
        # a rule set in part (``..._LIMIT`` only) keeps the other half of its own default
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, field in cls.model_fields.items():
            given, default = merged.get(name), field.default
            if isinstance(given, dict) and isinstance(default, RateLimitRule):
                merged[name] = {**default.model_dump(), **given}
        return merged

    def rule(self, name: str) -> RateLimitRule:
        """The rule called ``name`` (one of the ``RateLimitRule`` fields)."""
        found = getattr(self, name, None)
        if not isinstance(found, RateLimitRule):
            raise KeyError(f"no rate limit rule {name!r}")
        return found


class IdempotencySettings(BaseModel):
    key_max_chars: int = Field(default=128, ge=8)
    retention_hours: int = Field(default=24 * 7, ge=1)
    # keys the worker deletes at most per sweep (a sweep runs every second)
    expire_batch_max: int = Field(default=1000, ge=1, le=10_000)


class PaymentCodeSettings(BaseModel):
    """Consumer-presented payment codes (R-CODE-1, ``strongroom.paycodes``; the algorithm is
    in docs/payment-codes.md). A code of time step T (``step_s`` seconds since the epoch) is
    accepted from T's start until ``past_steps + 1`` steps later (60 s with the defaults), and
    ``future_steps`` early for a device clock that runs ahead."""

    issuer_id: str = Field(default="88880001", pattern=r"^[0-9]{8}$")
    step_s: int = Field(default=30, ge=5, le=300)
    past_steps: int = Field(default=1, ge=0, le=10)
    future_steps: int = Field(default=1, ge=0, le=2)
    # older steps still checked, only to answer ``payment_code_expired`` rather than invalid
    expired_lookback_steps: int = Field(default=20, ge=0, le=200)
    devices_per_user_max: int = Field(default=10, ge=1, le=100)
    device_name_max_chars: int = Field(default=60, ge=1, le=200)

    @property
    def window_s(self) -> int:
        """How long a code is accepted after its step starts."""
        return (self.past_steps + 1) * self.step_s


class VirtualCardSettings(BaseModel):
    """Virtual card numbers (R-TOKEN-1, ``strongroom.tokens``): 16 digits whose first
    ``len(bin_start)`` digits lie in ``bin_start..bin_end`` (6 to 8 digits, the same length),
    then random digits, then the Luhn check digit."""

    bin_start: str = Field(default="48950000", pattern=r"^[0-9]{6,8}$")
    bin_end: str = Field(default="48959999", pattern=r"^[0-9]{6,8}$")
    tokens_per_user_max: int = Field(default=20, ge=1, le=1000)
    merchant_id_max_chars: int = Field(default=64, ge=1, le=200)

    @model_validator(mode="after")
    def _range_is_a_range(self) -> VirtualCardSettings:
        if len(self.bin_start) != len(self.bin_end) or self.bin_start > self.bin_end:
            raise ValueError("virtual_cards.bin_start..bin_end: same length, start <= end")
        return self


class FxSettings(BaseModel):
    """Operator FX rates, quotes and conversions (R-FX-1, ``strongroom.fx``): how long a quote
    lives, the widest spread an operator may set, and how precise a mid rate may be written."""

    quote_ttl_s: int = Field(default=10, ge=1, le=300)
    spread_bps_max: int = Field(default=1000, ge=0, le=5000)
    rate_decimals_max: int = Field(default=18, ge=1, le=30)
    rate_integer_digits_max: int = Field(default=12, ge=1, le=30)
    rates_max: int = Field(default=500, ge=1, le=10_000)


class GiftSettings(BaseModel):
    """Gifts / red packets (R-GIFT-1): at most ``shares_max`` shares a gift, unclaimed shares
    go back to the sender after ``ttl_hours``, and the worker expires at most
    ``expire_batch_max`` gifts per sweep. The claim link is ``mail.public_url`` +
    ``/app/gifts/claim?code=...``."""

    shares_max: int = Field(default=100, ge=1, le=1000)
    ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    expire_batch_max: int = Field(default=100, ge=1, le=10_000)
    page_size_default: int = Field(default=20, ge=1)
    page_size_max: int = Field(default=100, ge=1, le=1000)


class MerchantSettings(BaseModel):
    """Merchants (R-MERCH-1..4, ``strongroom.merchants``): the default merchant discount rate,
    the refund window, the identifiers in merchant-presented codes and the webhook outbox's
    delivery (retried with exponential backoff: ``webhook_backoff_base_s`` x 2^(attempt-1),
    at most ``webhook_backoff_max_s``, until a 2xx or ``webhook_attempts_max`` attempts)."""

    discount_rate_bps_default: int = Field(default=80, ge=0, le=10_000)
    refund_window_days: int = Field(default=180, ge=1, le=3650)
    qr_account_identifier: str = Field(default="app.strongroom", min_length=1, max_length=32)
    code_account_identifier: str = Field(default="app.strongroom.code", min_length=1, max_length=32)
    webhook_backoff_base_s: float = Field(default=10.0, gt=0, le=3600)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0, le=86_400)
    webhook_attempts_max: int = Field(default=20, ge=1, le=100)
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_batch_max: int = Field(default=50, ge=1, le=1000)
    export_rows_max: int = Field(default=100_000, ge=1, le=1_000_000)


class SettlementSettings(BaseModel):
    """Daily merchant settlement and batch payouts (R-MERCH-3, ``strongroom.settlement``): a
    business day is a calendar day in ``timezone`` (the operator's); the worker settles the
    previous day once local time passes ``cutoff_hour``. A failed payout is retried by the next
    ``strongroom merchants settle`` at once, by the worker after ``retry_after_s``. The worker
    handles at most ``batch_max`` settlements or payout rows a sweep (``FOR UPDATE SKIP
    LOCKED``); an uploaded payout file holds at most ``payout_rows_max`` rows."""

    timezone: str = Field(default="Asia/Hong_Kong", min_length=1, max_length=64)
    cutoff_hour: int = Field(default=2, ge=0, le=23)
    retry_after_s: int = Field(default=3600, ge=1, le=7 * 86_400)
    batch_max: int = Field(default=50, ge=1, le=1000)
    payout_rows_max: int = Field(default=5000, ge=1, le=100_000)
    payout_file_max_bytes: int = Field(default=1_000_000, ge=1000, le=50_000_000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Asia/Hong_Kong)") from exc
        return value


def _default_database_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("strongroom"))
    return f"sqlite:///{data_dir / 'strongroom.sqlite3'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRONGROOM_", env_nested_delimiter="__")

    # Secure by default: a server nobody configured is production and refuses default secrets
    # (``check_production``); ``strongroom demo`` runs as demo, the tests as test.
    env: Literal["demo", "development", "test", "production"] = "production"
    database_url: str = Field(default_factory=_default_database_url)
    database_pool_size: int = Field(default=20, ge=1, le=200)
    secret_key: str = DEFAULT_SECRET_KEY
    vault_key: str = ""
    # older vault keys: they still open what they sealed, never seal (key rotation, R-SEC-11)
    vault_retired_keys: list[str] = Field(default_factory=list, max_length=vault.RETIRED_KEYS_MAX)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    mail_from: str = "Strongroom <no-reply@strongroom.local>"
    assets: list[AssetSetting] = Field(
        default_factory=lambda: [AssetSetting(code=a.code, scale=a.scale) for a in BUILTIN_ASSETS]
    )
    ledger: LedgerLimits = Field(default_factory=LedgerLimits)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    funding: FundingSettings = Field(default_factory=FundingSettings)
    fx: FxSettings = Field(default_factory=FxSettings)
    merchants: MerchantSettings = Field(default_factory=MerchantSettings)
    settlement: SettlementSettings = Field(default_factory=SettlementSettings)
    kyc: KycSettings = Field(default_factory=KycSettings)
    banking: BankingSettings = Field(default_factory=BankingSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    payment_codes: PaymentCodeSettings = Field(default_factory=PaymentCodeSettings)
    virtual_cards: VirtualCardSettings = Field(default_factory=VirtualCardSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    gifts: GiftSettings = Field(default_factory=GiftSettings)
    # the flat STRONGROOM_RATE_LIMITS_ENABLED of R-SEC-9: when set, it decides rate_limits.enabled
    rate_limits_enabled: bool | None = None
    run_worker: bool = True
    # the console's Inbox of the demo's delivered emails; unset: on in the demo only
    demo_inbox: bool | None = None
    request_body_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Strict-Transport-Security on every answer in production (only there): browsers then use
    # https for this host for that long (a year; 0 tells them to forget it)
    hsts_max_age_s: int = Field(default=365 * 24 * 3600, ge=0, le=2 * 365 * 24 * 3600)

    @field_validator("secret_key")
    @classmethod
    def _secret_long_enough(cls, value: str) -> str:
        if len(value) < 16:
            raise ValueError("secret_key must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _sandbox_caps_known(self) -> Settings:
        # Every asset the sandbox can top up has a cap that its scale can hold.
        if self.sandbox_enabled():
            for asset in self.assets:
                cap = self.funding.sandbox_max_topup.get(asset.code)
                if cap is None:
                    raise ValueError(f"funding.sandbox_max_topup has no cap for {asset.code}")
                try:
                    parse_amount(cap, asset.scale)
                except DomainError as error:
                    raise ValueError(f"funding.sandbox_max_topup.{asset.code}: {error}") from None
        return self

    @model_validator(mode="after")
    def _limits_know_every_asset(self) -> Settings:
        missing = [a.code for a in self.assets if a.code not in self.limits.prices]
        if missing:
            raise ValueError(f"limits.prices has no reference price for {', '.join(missing)}")
        if "unverified" not in self.limits.tiers:
            raise ValueError("limits.tiers must have the unverified tier")
        return self

    @model_validator(mode="after")
    def _flat_rate_limits_switch(self) -> Settings:
        if self.rate_limits_enabled is not None:
            self.rate_limits = self.rate_limits.model_copy(
                update={"enabled": self.rate_limits_enabled}
            )
        return self

    @model_validator(mode="after")
    def _attach_vault(self) -> Settings:
        self.auth._keyring = vault.keyring(
            self.vault_key,
            self.vault_retired_keys,
            secret_key=self.secret_key,
            production=self.env == "production",
        )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("STRONGROOM_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    def asset_registry(self) -> AssetRegistry:
        return AssetRegistry([Asset(a.code, a.scale) for a in self.assets])

    def sandbox_enabled(self) -> bool:
        """Whether the ``sandbox`` top-up channel exists (see ``FundingSettings``)."""
        if self.funding.sandbox_enabled is None:
            return self.env in SANDBOX_ENVIRONMENTS
        return self.funding.sandbox_enabled

    def demo_inbox_enabled(self) -> bool:
        """Whether the console's Inbox of delivered emails (one-time secrets included, see
        ``web.console.inbox``) may exist: ``demo_inbox`` unset means in the demo only."""
        return self.env == "demo" if self.demo_inbox is None else self.demo_inbox

    def production_problems(self) -> list[str]:
        """What production refuses in these settings (R-SEC-11), one sentence each naming what
        to set; empty outside production."""
        if self.env != "production":
            return []
        problems = [
            _weak_secret("STRONGROOM_SECRET_KEY", self.secret_key),
            _weak_secret("STRONGROOM_VAULT_KEY", self.vault_key),
        ]
        if self.vault_key and self.vault_key == self.secret_key:
            problems.append("STRONGROOM_VAULT_KEY must differ from STRONGROOM_SECRET_KEY")
        if self.sandbox_enabled():
            problems.append(
                "the sandbox top-up channel mints money: unset STRONGROOM_FUNDING__SANDBOX_ENABLED"
            )
        for connector in ("fps", "card"):
            secret = getattr(self.funding, connector).webhook_secret
            if secret:  # a connector switched on signs with a secret nobody can guess
                name = f"STRONGROOM_FUNDING__{connector.upper()}__WEBHOOK_SECRET"
                problems.append(_weak_secret(name, secret))
        if self.demo_inbox_enabled():
            problems.append(
                "the demo inbox shows every email's secrets: unset STRONGROOM_DEMO_INBOX"
            )
        if not self.rate_limits.enabled:
            problems.append(
                "rate limits are off: unset STRONGROOM_RATE_LIMITS_ENABLED and "
                "STRONGROOM_RATE_LIMITS__ENABLED"
            )
        return [problem for problem in problems if problem]

    def check_production(self) -> None:
        """Refuse to run production with demo settings (``ProductionRefused``: one line)."""
        problems = self.production_problems()
        if problems:
            raise ProductionRefused(problems)


class ProductionRefused(ValueError):
    """Production settings that must not run; ``str()`` is one line naming what to set."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "refusing to run with STRONGROOM_ENV=production: "
            + "; ".join(problems)
            + " (or set STRONGROOM_ENV=development for a local trial)"
        )


def _weak_secret(name: str, value: str) -> str:
    """The problem with a production secret, or "" when it is long and not a known default."""
    if not value:
        return f"set {name} (at least {PRODUCTION_SECRET_MIN_CHARS} characters: {SECRET_HINT})"
    if value in KNOWN_SECRETS or len(value) < PRODUCTION_SECRET_MIN_CHARS:
        return (
            f"{name} is a default or shorter than {PRODUCTION_SECRET_MIN_CHARS} characters: "
            f"set a random one ({SECRET_HINT})"
        )
    return ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
