"""One typed settings object (SPEC P5/P6): environment variables ``STRONGROOM_*`` and a TOML
file named by ``STRONGROOM_CONFIG`` (same keys, lower case, without the prefix)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from strongroom.money import BUILTIN_ASSETS, Asset, AssetRegistry


class AssetSetting(BaseModel):
    code: str
    scale: int = Field(ge=0, le=18)


class LedgerLimits(BaseModel):
    """Bounds on ledger work (P5)."""

    batch_max_transfers: int = Field(default=8000, ge=1, le=100_000)
    # single transfers from concurrent requests are committed together, up to this many
    group_commit_max: int = Field(default=256, ge=1, le=8000)
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=500, ge=1, le=10_000)
    pending_timeout_max_s: int = Field(default=7 * 24 * 3600, ge=1)
    expire_batch_max: int = Field(default=1000, ge=1)
    export_rows_max: int = Field(default=100_000, ge=1)
    note_max_chars: int = Field(default=140, ge=0)


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
    # R-SEC-4 password reset, R-SEC-5 withdrawal freeze after a security change
    reset_token_ttl_s: int = Field(default=30 * 60, ge=60, le=24 * 3600)
    reset_emails_per_hour_max: int = Field(default=3, ge=1, le=100)
    security_freeze_s: int = Field(default=24 * 3600, ge=0)
    # R-SEC-6/7 pages of sessions and audit events
    sessions_max: int = Field(default=100, ge=1, le=1000)
    audit_page_size_default: int = Field(default=50, ge=1)
    audit_page_size_max: int = Field(default=200, ge=1, le=1000)


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
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=200, ge=1, le=1000)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> MailSettings:
        # A worker stops sending when less than two timeouts of its lease are left; a lease
        # shorter than that could let a second worker claim a row that is still being sent.
        if self.lease_s < 3 * self.smtp_timeout_s:
            raise ValueError("mail.lease_s must be at least 3 x mail.smtp_timeout_s")
        return self


class IdempotencySettings(BaseModel):
    key_max_chars: int = Field(default=128, ge=8)
    retention_hours: int = Field(default=24 * 7, ge=1)
    # keys the worker deletes at most per sweep (a sweep runs every second)
    expire_batch_max: int = Field(default=1000, ge=1, le=10_000)


def _default_database_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("strongroom"))
    return f"sqlite:///{data_dir / 'strongroom.sqlite3'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRONGROOM_", env_nested_delimiter="__")

    env: Literal["demo", "development", "production"] = "development"
    database_url: str = Field(default_factory=_default_database_url)
    database_pool_size: int = Field(default=20, ge=1, le=200)
    secret_key: str = "dev-secret-change-me"  # noqa: S105  (refused in production)
    vault_key: str = ""
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
    run_worker: bool = True
    request_body_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    @field_validator("secret_key")
    @classmethod
    def _secret_long_enough(cls, value: str) -> str:
        if len(value) < 16:
            raise ValueError("secret_key must be at least 16 characters")
        return value

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

    def check_production(self) -> None:
        if self.env == "production" and self.secret_key == "dev-secret-change-me":  # noqa: S105
            raise ValueError("STRONGROOM_SECRET_KEY must be set in production")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
