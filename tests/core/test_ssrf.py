"""callbackUrl SSRF guard: https only, no internal addresses unless allow-listed."""

from __future__ import annotations

import ipaddress

import pytest
from redis.asyncio import Redis

from service.core.ssrf import (
    CallbackAllowlist,
    address_forbidden,
    check_callback_url,
    embedded_ipv4,
)
from tests.api.test_routes import AUTH, BASE, SP, api_client, make_settings


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.10.10",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "ff02::1",
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert address_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "20.190.160.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not address_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://8.8.8.8/cb", "https"),
        ("https://127.0.0.1/cb", "loopback"),
        ("https://[::1]:8443/cb", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://localhost/cb", "loopback"),  # resolved: 127.0.0.1 / ::1
        ("https://user:pw@8.8.8.8/cb", "credentials"),
        ("https://no-such-host.invalid/cb", "does not resolve"),
    ],
)
async def test_unsafe_callback_urls(url: str, reason: str) -> None:
    why = await check_callback_url(url, CallbackAllowlist())
    assert why is not None
    assert reason in why


async def test_allowlist_by_host_and_network() -> None:
    allow = CallbackAllowlist(["localhost", "10.0.0.0/8"])
    assert await check_callback_url("https://localhost:8443/cb", allow) is None
    assert await check_callback_url("https://10.2.3.4/cb", allow) is None
    assert await check_callback_url("https://192.168.0.1/cb", allow) is not None
    assert await check_callback_url("https://8.8.8.8/cb", CallbackAllowlist()) is None


async def test_api_rejects_internal_callback_with_422(redis: Redis, redis_url: str) -> None:
    async with api_client(make_settings(redis_url)) as client:
        body = {"servicePrincipalId": SP, "callbackUrl": "https://169.254.169.254/x"}
        resp = await client.post(BASE, json=body, headers=AUTH)
        assert resp.status == 422
        problem = await resp.json(content_type=None)
        assert problem["errors"][0]["field"] == "callbackUrl"
        assert "169.254" not in problem["errors"][0]["reason"]
        assert await redis.zcard("provisioner:queue") == 0
    allow = make_settings(redis_url, callback_allowlist="127.0.0.0/8")
    async with api_client(allow) as client:
        body = {"servicePrincipalId": SP, "callbackUrl": "https://127.0.0.1:9443/cb"}
        assert (await client.post(BASE, json=body, headers=AUTH)).status == 202


def _teredo(server: str, client: str) -> str:
    """A Teredo address (RFC 4380): 2001:0::/32, server IPv4, flags, port, client IPv4 (both
    obfuscated by XOR with all ones, as on the wire)."""
    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64)
    value |= 0xFFFF << 32  # obfuscated port 0
    value |= int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    return str(ipaddress.IPv6Address(value))


@pytest.mark.parametrize(
    "address",
    [
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254 (the attack)
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:0a00:0001::",  # 6to4 of 10.0.0.1
        "::ffff:a9fe:a9fe",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::169.254.169.254",  # IPv4-compatible (deprecated)
        "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix
        "64:ff9b::127.0.0.1",
        "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use prefix
        _teredo("8.8.8.8", "169.254.169.254"),
        _teredo("127.0.0.1", "8.8.4.4"),
    ],
)
def test_ipv6_embeddings_of_blocked_ipv4_are_forbidden(address: str) -> None:
    assert address_forbidden(ipaddress.ip_address(address))


def test_embedded_ipv4_is_extracted() -> None:
    metadata = ipaddress.IPv4Address("169.254.169.254")
    assert embedded_ipv4(ipaddress.IPv6Address("2002:a9fe:a9fe::")) == [metadata]
    assert embedded_ipv4(ipaddress.IPv6Address("64:ff9b::a9fe:a9fe")) == [metadata]
    assert metadata in embedded_ipv4(ipaddress.IPv6Address(_teredo("8.8.8.8", str(metadata))))
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700:4700::1111")) == []
    # A public IPv4 inside 6to4 stays allowed (it is that host's relay address).
    assert not address_forbidden(ipaddress.ip_address("2002:0808:0808::1"))


@pytest.mark.parametrize(
    "host",
    ["[2002:a9fe:a9fe::]", "[::ffff:169.254.169.254]", "[64:ff9b::a9fe:a9fe]", "[::a9fe:a9fe]"],
)
async def test_api_rejects_ipv6_forms_of_the_metadata_address(
    redis: Redis, redis_url: str, host: str
) -> None:
    async with api_client(make_settings(redis_url)) as client:
        body = {"servicePrincipalId": SP, "callbackUrl": f"https://{host}/latest/meta-data"}
        resp = await client.post(BASE, json=body, headers=AUTH)
        assert resp.status == 422, await resp.text()
        problem = await resp.json(content_type=None)
        assert problem["errors"][0]["field"] == "callbackUrl"
        assert await redis.zcard("provisioner:queue") == 0
