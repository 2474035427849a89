"""Entra ID access tokens as callers: real tokens from the sandbox (over TLS, its real JWKS and
discovery document) and hand-made bad ones (expired, wrong audience/issuer/tenant, alg=none,
HS256 key confusion, unknown kid)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis

from sandbox.certs import ensure_signing_key, key_id
from service.api.auth.entra import JwksCache, tls_context
from service.core.settings import Settings
from tests.api.test_routes import AUTH, BASE, api_client, make_settings
from tests.helpers.sandbox import InProcessSandbox, in_process_sandbox

TENANT = "8d2c7a41-5b3e-4f60-9a1d-2e3f4a5b6c7d"
WRITER = "0a1b2c3d-0000-4000-8000-00000000000a"
READER = "0a1b2c3d-0000-4000-8000-00000000000b"
NOBODY = "0a1b2c3d-0000-4000-8000-00000000000c"
AUDIENCE = "api://provisioner"
SP = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
OTHER_SP = "cbe29441-8636-4563-a4a8-c390c0e83cb4"
SEED = {
    "tenantId": TENANT,
    "applications": [
        {
            "clientId": WRITER,
            "clientSecret": "writer-secret-1",
            "roles": ["Provisioning.ReadWrite.All"],
        },
        {"clientId": READER, "clientSecret": "reader-secret-1", "roles": ["Provisioning.Read.All"]},
        {"clientId": NOBODY, "clientSecret": "nobody-secret-1", "roles": []},
    ],
    "servicePrincipals": [],
}


@pytest.fixture
async def sb(tmp_path: Path) -> AsyncIterator[InProcessSandbox]:
    async with in_process_sandbox(tmp_path / "sandbox", seed=SEED) as sandbox:
        yield sandbox


async def token(sb: InProcessSandbox, client_id: str, scope: str = f"{AUDIENCE}/.default") -> str:
    app = next(a for a in sb.ctx.config.seed.applications if a.clientId == client_id)
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": app.clientSecret or "",
        "scope": scope,
    }
    async with sb.session.post(f"{sb.base_url}/{TENANT}/oauth2/v2.0/token", data=form) as resp:
        body = await resp.json()
    return str(body["access_token"])


def entra_settings(sb: InProcessSandbox, redis_url: str, **overrides: Any) -> Settings:
    return make_settings(
        redis_url,
        entra_audience=AUDIENCE,
        entra_tenant_id=TENANT,
        entra_authority_host=sb.base_url,
        entra_leeway_s=5,
        ca_bundle=sb.ca_path,
        **overrides,
    )


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def claims(sb: InProcessSandbox, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "aud": AUDIENCE,
        "iss": f"{sb.base_url}/{TENANT}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "tid": TENANT,
        "appid": WRITER,
        "roles": ["Provisioning.ReadWrite.All"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(sb: InProcessSandbox, payload: dict[str, Any]) -> str:
    """The key-confusion attack: HMAC-sign with the RSA public key as the secret."""
    key = ensure_signing_key(sb.ctx.config.state_dir)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key_id(key)}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


async def test_real_tokens_authenticate_and_roles_decide(
    sb: InProcessSandbox, redis: Redis, redis_url: str
) -> None:
    async with api_client(entra_settings(sb, redis_url)) as client:
        writer = await token(sb, WRITER)
        resp = await client.post(BASE, json={"servicePrincipalId": SP}, headers=bearer(writer))
        assert resp.status == 202, await resp.text()
        record = await resp.json()
        assert record["caller"] == f"entra:{WRITER}"
        assert (await client.get(f"{BASE}/{record['id']}", headers=bearer(writer))).status == 200
        # Another caller (an API key) cannot see it: 404, not 403.
        assert (await client.get(f"{BASE}/{record['id']}", headers=AUTH)).status == 404
        reader = await token(sb, READER)
        resp = await client.post(BASE, json={"servicePrincipalId": SP}, headers=bearer(reader))
        assert resp.status == 403
        assert (await client.get(BASE, headers=bearer(reader))).status == 200
        nobody = await token(sb, NOBODY)
        assert (await client.get(BASE, headers=bearer(nobody))).status == 403
        # API keys keep working next to tokens.
        assert (await client.get(BASE, headers=AUTH)).status == 200


async def test_bad_tokens_are_401(sb: InProcessSandbox, redis: Redis, redis_url: str) -> None:
    real_key = ensure_signing_key(sb.ctx.config.state_dir)
    kid = key_id(real_key)
    throwaway = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def signed(payload: dict[str, Any], key: Any = real_key, **headers: Any) -> str:
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid, **headers})

    wrong_aud = await token(sb, WRITER, scope="https://graph.microsoft.com/.default")
    sb.ctx.tokens.lifetime_s = -120  # the sandbox now issues tokens that expired 2 min ago
    expired = await token(sb, WRITER)
    sb.ctx.tokens.lifetime_s = 3600
    now = int(time.time())
    bad = {
        "expired (real)": expired,
        "expired": signed(claims(sb, exp=now - 60, iat=now - 600, nbf=now - 600)),
        "not yet valid": signed(claims(sb, nbf=now + 600)),
        "wrong audience (real)": wrong_aud,
        "wrong audience": signed(claims(sb, aud="api://someone-else")),
        "wrong issuer": signed(claims(sb, iss="https://evil.example/v2.0")),
        "wrong tenant": signed(claims(sb, tid="00000000-0000-0000-0000-000000000000")),
        "no tid": signed(claims(sb, tid=None)),
        "no exp": signed(claims(sb, exp=None)),
        "alg none": jwt.encode(claims(sb), None, algorithm="none", headers={"kid": kid}),
        "HS256 with the public key": hs256_with_public_key(sb, claims(sb)),
        "unknown kid": jwt.encode(
            claims(sb), throwaway, algorithm="RS256", headers={"kid": "unknown-kid"}
        ),
        "known kid, other key": signed(claims(sb), key=throwaway),
        "RS512": jwt.encode(claims(sb), real_key, algorithm="RS512", headers={"kid": kid}),
        "garbage": "a.b.c",
    }
    async with api_client(entra_settings(sb, redis_url)) as client:
        # The control: a token built the same way but valid is accepted.
        ok = await client.get(BASE, headers=bearer(signed(claims(sb))))
        assert ok.status == 200
        for name, tok in bad.items():
            resp = await client.get(BASE, headers=bearer(tok))
            assert resp.status == 401, name
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert tok not in await resp.text()


async def test_policy_names_token_callers_and_limits_targets(
    sb: InProcessSandbox, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "tags": {"crm": [SP]},
                "callers": {
                    "hr-portal": {
                        "app_ids": [WRITER],
                        "service_principals": ["tag:crm"],
                        "templates": ["salesforce"],
                    },
                    "alpha": {"permissions": ["read"]},
                },
            }
        )
    )
    settings = entra_settings(sb, redis_url, access_policy_file=policy)
    async with api_client(settings) as client:
        writer = bearer(await token(sb, WRITER))
        ok = {"servicePrincipalId": SP, "templateId": "salesforce"}
        resp = await client.post(BASE, json=ok, headers=writer)
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["caller"] == "hr-portal"
        for body in (
            {"servicePrincipalId": OTHER_SP, "templateId": "salesforce"},  # not in the tag
            {"servicePrincipalId": SP, "templateId": "other"},  # template not allowed
            {"servicePrincipalId": SP},  # must name the template
        ):
            resp = await client.post(BASE, json=body, headers=writer)
            assert resp.status == 403, body
            assert (await resp.json(content_type=None))["status"] == 403
        # alpha (API key) may read, not write; the reader app is not listed: nothing.
        assert (await client.get(BASE, headers=AUTH)).status == 200
        assert (await client.post(BASE, json=ok, headers=AUTH)).status == 403
        reader = bearer(await token(sb, READER))
        assert (await client.get(BASE, headers=reader)).status == 403
        assert await redis.zcard("provisioner:queue") == 1


async def test_jwks_fetched_once_and_refreshed_at_most_once_a_minute(
    sb: InProcessSandbox,
) -> None:
    now = [1000.0]
    cache = JwksCache(
        f"{sb.base_url}/{TENANT}/v2.0/.well-known/openid-configuration",
        ssl_context=tls_context(Path(sb.ca_path)),
        min_refresh_s=60,
        clock=lambda: now[0],
    )
    kid = key_id(ensure_signing_key(sb.ctx.config.state_dir))
    assert await cache.key(kid) is not None
    assert cache.issuer == f"{sb.base_url}/{TENANT}/v2.0"
    for _ in range(5):
        assert await cache.key("unknown") is None
        assert await cache.key(kid) is not None
    assert cache.fetches == 1
    now[0] += 61
    assert await cache.key("unknown") is None
    assert await cache.key("unknown") is None
    assert cache.fetches == 2
