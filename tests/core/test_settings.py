"""Settings from the environment; every bad value names its variable first."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from service.api.app import create_app
from service.core.config_values import ApiKey, hash_api_key
from service.core.errors import ConfigError
from service.core.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PROVISIONER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    settings = load_settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.max_body_bytes == 64 * 1024
    assert settings.api_keys == ()
    assert settings.encryption_keys == ()
    assert settings.graph_url == "https://graph.microsoft.com/v1.0"
    assert not settings.tenant_configured
    assert (settings.auto_restart, settings.auto_restart_max_per_day) == ("off", 3)


def test_auto_restart_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_AUTO_RESTART", "quarantine")
    monkeypatch.setenv("PROVISIONER_AUTO_RESTART_MAX_PER_DAY", "5")
    settings = load_settings()
    assert (settings.auto_restart, settings.auto_restart_max_per_day) == ("quarantine", 5)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("PROVISIONER_REDIS_URL", "http://localhost:6379"),
        ("PROVISIONER_API_KEYS", "alpha:not-a-digest"),
        ("PROVISIONER_API_KEYS", "no-colon-here"),
        ("PROVISIONER_API_KEYS", ":" + "a" * 64),
        ("PROVISIONER_AUTHORITY_HOST", "http://login.example"),
        ("PROVISIONER_GRAPH_URL", "ftp://graph"),
        ("PROVISIONER_MAX_BODY_BYTES", "10"),
        ("PROVISIONER_WORKER_CONCURRENCY", "many"),
        ("PROVISIONER_LOG_LEVEL", "LOUD"),
        ("PROVISIONER_CA_BUNDLE", "/does/not/exist.pem"),
        ("PROVISIONER_AUTO_RESTART", "always"),
        ("PROVISIONER_AUTO_RESTART_MAX_PER_DAY", "0"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{var}: "), message
    assert "\n" not in message


def test_api_keys_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hash_api_key("k1")
    monkeypatch.setenv("PROVISIONER_API_KEYS", f" portal:{digest.upper()} , jira:{digest} ,")
    assert load_settings().api_keys == (ApiKey("portal", digest), ApiKey("jira", digest))


def test_encryption_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("PROVISIONER_ENCRYPTION_KEY", f"{k1},{k2}")
    assert load_settings().encryption_keys == (k1, k2)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PROVISIONER_QUEUE_NAME=from-dotenv\n")
    assert load_settings().queue_name == "from-dotenv"


def test_env_beats_overrides_only_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_QUEUE_NAME", "env")
    assert load_settings().queue_name == "env"
    assert load_settings(queue_name="explicit").queue_name == "explicit"


def test_secret_and_certificate_are_exclusive(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as info:
        load_settings(client_secret="s", client_certificate_path=str(cert))
    assert "PROVISIONER_CLIENT_SECRET" in str(info.value)
    assert "PROVISIONER_CLIENT_CERTIFICATE_PATH" in str(info.value)


def test_bad_encryption_key_stops_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_ENCRYPTION_KEY", "too-short")
    settings = load_settings()
    with pytest.raises(ConfigError) as info:
        create_app(settings)
    assert str(info.value).startswith("PROVISIONER_ENCRYPTION_KEY: ")


def test_client_secret_is_not_in_repr() -> None:
    settings = load_settings(client_secret="very-secret-value")
    assert "very-secret-value" not in repr(settings)


def test_require_tenant_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError, match=r"^PROVISIONER_TENANT_ID: "):
        load_settings().require_tenant()
    with pytest.raises(ConfigError, match=r"^PROVISIONER_CLIENT_SECRET"):
        load_settings(tenant_id="t", client_id="c").require_tenant()
