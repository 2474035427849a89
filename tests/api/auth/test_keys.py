"""Bearer API keys: 401 problem+json with WWW-Authenticate, caller names, public endpoints."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from redis.asyncio import Redis

from service.api.auth.keys import PUBLIC_PATHS, ApiKeyAuthenticator, bearer_token
from service.core.config_values import ApiKey, hash_api_key
from tests.api.test_routes import API_KEY, AUTH, BASE, OTHER_KEY, SP, api_client, make_settings


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": "Bearer "},
        {"Authorization": API_KEY},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": f"Bearer {hash_api_key(API_KEY)}"},  # the hash is not the key
    ],
)
async def test_missing_or_wrong_key_is_401(
    redis: Redis, redis_url: str, headers: dict[str, str]
) -> None:
    async with api_client(make_settings(redis_url)) as client:
        for method, path in [("POST", BASE), ("GET", BASE), ("GET", f"{BASE}/{'a' * 32}")]:
            resp = await client.request(
                method, path, json={"servicePrincipalId": SP}, headers=headers
            )
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            problem = await resp.json(content_type=None)
            assert problem["status"] == 401
            assert API_KEY not in await resp.text()


async def test_valid_keys_name_the_caller(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url)) as client:
        resp = await client.post(BASE, json={"servicePrincipalId": SP}, headers=AUTH)
        assert (await resp.json())["caller"] == "alpha"
        resp = await client.post(
            BASE,
            json={"servicePrincipalId": SP, "templateId": "other"},
            headers={"Authorization": f"bearer {OTHER_KEY}"},  # scheme is case-insensitive
        )
        assert (await resp.json())["caller"] == "beta"


async def test_public_paths_need_no_key(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url)) as client:
        for path in sorted(PUBLIC_PATHS):
            assert (await client.get(path)).status == 200, path


async def test_no_keys_configured_rejects_everyone(redis: Redis, redis_url: str) -> None:
    settings = make_settings(redis_url, api_keys="")
    assert settings.api_keys == ()
    async with api_client(settings) as client:
        assert (await client.get(BASE, headers=AUTH)).status == 401
        assert (await client.get("/healthz")).status == 200


def test_bearer_token_parsing() -> None:
    def token(value: str | None) -> str | None:
        headers = {} if value is None else {"Authorization": value}
        return bearer_token(make_mocked_request("GET", "/", headers=headers))

    assert token("Bearer abc") == "abc"
    assert token("BEARER  abc ") == "abc"
    assert token(None) is None
    assert token("Token abc") is None
    assert token("Bearer") is None


async def test_authenticator_finds_each_key_by_its_digest() -> None:
    # One dict lookup by SHA-256 whatever the number of keys; only a whole digest matches.
    keys = [ApiKey(f"c{i}", hash_api_key(f"key-{i}")) for i in range(500)]
    auth = ApiKeyAuthenticator([*keys, ApiKey("last", hash_api_key("key-7"))])

    async def caller(token: str) -> str | None:
        req = make_mocked_request("GET", "/", headers={"Authorization": f"Bearer {token}"})
        return await auth.authenticate(req)

    assert await caller("key-0") == "c0"
    assert await caller("key-499") == "c499"
    assert await caller("key-7") == "last"  # a later entry of the same key wins
    assert await caller(hash_api_key("key-1")) is None  # the digest itself is no key
    assert await caller("key-1 ") == "c1"  # the header's value is stripped
    assert await caller("key-10x") is None
