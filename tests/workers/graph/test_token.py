"""The token provider: real msal against the sandbox over TLS, trusted only via CA_BUNDLE."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from service.core.errors import ConfigError, TokenError
from service.core.settings import Settings, load_settings
from tests.helpers.sandbox import SandboxProcess
from workers.graph.token import TokenProvider, certificate_credential


def _settings(sandbox: SandboxProcess, **overrides: object) -> Settings:
    env = {k.removeprefix("PROVISIONER_").lower(): v for k, v in sandbox.env().items()}
    return load_settings(**{**env, **overrides})


async def test_secret_credential_gets_a_graph_token(sandbox: SandboxProcess) -> None:
    provider = await TokenProvider.create(_settings(sandbox))
    token = await provider.token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tid"] == sandbox.tenant_id
    assert claims["appid"] == sandbox.info["client_id"]
    assert "Synchronization.ReadWrite.All" in claims["roles"]
    assert provider.acquisitions == 1
    assert await provider.token() == token  # from msal's cache
    assert provider.acquisitions == 1


async def test_certificate_credential_gets_a_token(sandbox: SandboxProcess) -> None:
    settings = _settings(
        sandbox,
        client_id=sandbox.info["cert_client_id"],
        client_secret=None,
        client_certificate_path=Path(sandbox.info["cert_path"]),
    )
    provider = await TokenProvider.create(settings)
    claims = jwt.decode(await provider.token(), options={"verify_signature": False})
    assert claims["appid"] == sandbox.info["cert_client_id"]


async def test_invalidate_fetches_a_new_token(sandbox: SandboxProcess) -> None:
    provider = await TokenProvider.create(_settings(sandbox))
    first = await provider.token()
    await provider.invalidate(first)
    await provider.token()
    assert provider.acquisitions == 2


async def test_a_token_is_reused_without_asking_msal_until_invalidated(
    sandbox: SandboxProcess,
) -> None:
    """Between two asks the token is reused in-process (no thread hop, no cache search); an
    invalidated one never is."""
    provider = await TokenProvider.create(_settings(sandbox))
    asks = 0
    acquire = provider._app.acquire_token_for_client

    def counting(**kw: object) -> object:
        nonlocal asks
        asks += 1
        return acquire(**kw)

    provider._app.acquire_token_for_client = counting
    first = await provider.token()
    assert [await provider.token() for _ in range(20)] == [first] * 20
    assert asks == 1
    await provider.invalidate(first)
    second = await provider.token()
    assert second != first
    assert asks == 2


async def test_ca_bundle_is_trusted_despite_requests_ca_bundle(
    sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Environment bundles that do not hold the sandbox CA (as on CI machines): msal must
    # still trust the sandbox through PROVISIONER_CA_BUNDLE alone.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    provider = await TokenProvider.create(_settings(sandbox))
    assert await provider.token()


async def test_without_ca_bundle_tls_fails(sandbox: SandboxProcess) -> None:
    # msal's constructor already fetches the discovery document over TLS.
    with pytest.raises(TokenError):
        await TokenProvider.create(_settings(sandbox, ca_bundle=None))


async def test_wrong_secret_is_a_token_error_without_the_secret(sandbox: SandboxProcess) -> None:
    provider = await TokenProvider.create(_settings(sandbox, client_secret="not-the-secret"))
    with pytest.raises(TokenError) as info:
        await provider.token()
    assert info.value.error == "invalid_client"
    assert "not-the-secret" not in str(info.value)


def test_certificate_file_without_key_is_a_config_error(sandbox: SandboxProcess) -> None:
    pem = Path(sandbox.info["cert_path"]).read_bytes()
    cert_only = pem[pem.index(b"-----BEGIN CERTIFICATE") :]
    with pytest.raises(ConfigError, match="PROVISIONER_CLIENT_CERTIFICATE_PATH"):
        certificate_credential(cert_only)
    with pytest.raises(ConfigError, match="PROVISIONER_CLIENT_CERTIFICATE_PATH"):
        certificate_credential(b"not a pem")
