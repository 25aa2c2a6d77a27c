"""R-SEC-11: the environments and what production refuses (``Settings.check_production``).

Production is the default, so a server nobody configured refuses to run with the built-in
secret; each refusal is one line that names the setting to change."""

from __future__ import annotations

import secrets

import pytest

from strongroom.settings import DEFAULT_SECRET_KEY, ProductionRefused, Settings

GOOD_SECRET = secrets.token_urlsafe(48)
GOOD_VAULT = secrets.token_urlsafe(48)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test passes counts: no STRONGROOM_* variable of the machine."""
    for name in ("STRONGROOM_ENV", "STRONGROOM_SECRET_KEY", "STRONGROOM_VAULT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STRONGROOM_CONFIG", raising=False)


def production(**changes: object) -> Settings:
    values: dict[str, object] = {"secret_key": GOOD_SECRET, "vault_key": GOOD_VAULT}
    return Settings(**(values | changes))  # type: ignore[arg-type]


def refusal(settings: Settings) -> str:
    with pytest.raises(ProductionRefused) as refused:
        settings.check_production()
    text = str(refused.value)
    assert "\n" not in text, "one line"
    return text


def test_production_is_the_default_and_refuses_the_built_in_secret_and_no_vault_key() -> None:
    stranger = Settings()
    assert stranger.env == "production"
    assert stranger.secret_key == DEFAULT_SECRET_KEY
    text = refusal(stranger)
    assert "STRONGROOM_SECRET_KEY" in text and "STRONGROOM_VAULT_KEY" in text
    assert "STRONGROOM_ENV=development" in text  # the way to a local trial
    assert not stranger.sandbox_enabled() and not stranger.demo_inbox_enabled()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"secret_key": DEFAULT_SECRET_KEY}, "STRONGROOM_SECRET_KEY"),
        ({"secret_key": "x" * 31}, "STRONGROOM_SECRET_KEY"),
        ({"vault_key": ""}, "STRONGROOM_VAULT_KEY"),
        ({"vault_key": "short-vault-key"}, "STRONGROOM_VAULT_KEY"),
        ({"vault_key": DEFAULT_SECRET_KEY}, "STRONGROOM_VAULT_KEY"),
        ({"vault_key": GOOD_SECRET}, "STRONGROOM_VAULT_KEY must differ"),
        ({"funding": {"sandbox_enabled": True}}, "STRONGROOM_FUNDING__SANDBOX_ENABLED"),
        ({"demo_inbox": True}, "STRONGROOM_DEMO_INBOX"),
        ({"rate_limits": {"enabled": False}}, "STRONGROOM_RATE_LIMITS__ENABLED"),
        ({"funding": {"fps": {"webhook_secret": "s3cret"}}}, "STRONGROOM_FUNDING__FPS__"),
        ({"funding": {"card": {"webhook_secret": "secret"}}}, "STRONGROOM_FUNDING__CARD__"),
    ],
)
def test_production_refuses_each_demo_setting_naming_what_to_set(
    changes: dict[str, object], named: str
) -> None:
    settings = production(**changes)
    assert named in refusal(settings)
    assert len(settings.production_problems()) == 1


def test_a_complete_production_configuration_passes() -> None:
    connectors = {"fps": {"webhook_secret": secrets.token_urlsafe(32)}, "store_cash_enabled": True}
    assert production(funding=connectors).production_problems() == []
    settings = production()
    settings.check_production()
    assert settings.production_problems() == []
    assert not settings.sandbox_enabled() and not settings.demo_inbox_enabled()
    assert settings.rate_limits.enabled


def test_production_read_from_the_environment_refuses_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("STRONGROOM_VAULT_KEY", GOOD_VAULT)
    Settings().check_production()
    monkeypatch.setenv("STRONGROOM_FUNDING__SANDBOX_ENABLED", "true")
    assert "SANDBOX_ENABLED" in refusal(Settings())


@pytest.mark.parametrize("env", ["demo", "development", "test"])
def test_other_environments_run_with_defaults_and_have_the_sandbox(env: str) -> None:
    settings = Settings(env=env)  # type: ignore[arg-type]
    settings.check_production()
    assert settings.sandbox_enabled()
    assert settings.demo_inbox_enabled() is (env == "demo")
    assert not Settings(env=env, funding={"sandbox_enabled": False}).sandbox_enabled()  # type: ignore[arg-type]


def test_the_sandbox_needs_a_cap_for_every_asset_it_can_top_up() -> None:
    with pytest.raises(ValueError, match="no cap for HKD"):
        Settings(env="test", funding={"sandbox_max_topup": {"CNY": "100"}})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sandbox_max_topup\.HKD: .* decimals"):
        Settings(
            env="test",
            funding={"sandbox_max_topup": {"HKD": "1.001"}},  # type: ignore[arg-type]
            assets=[{"code": "HKD", "scale": 2}],  # type: ignore[list-item]
        )
    # production has no sandbox, so no cap is needed there
    assert production(funding={"sandbox_max_topup": {}}).production_problems() == []
