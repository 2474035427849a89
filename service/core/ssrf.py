"""SSRF guard for ``callbackUrl``: https only, and never an internal address.

The host is resolved (``loop.getaddrinfo``) and every address it resolves to must be public:
loopback, private (RFC 1918, ULA), link-local, multicast, reserved, unspecified, shared (CGNAT)
and the cloud metadata addresses (169.254.169.254, fd00:ec2::254) are refused, unless the host
or the address is in ``PROVISIONER_CALLBACK_ALLOWLIST`` (host names, IP addresses or CIDR
ranges). A host that does not resolve is refused too: fail closed. An IPv6 address that embeds
an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, 6to4 ``2002::/16``,
NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, Teredo ``2001::/32``) is refused when the IPv4
address it carries would be: ``[2002:a9fe:a9fe::]`` is the metadata address.

:class:`SafeResolver` repeats the check when the worker connects (aiohttp resolver), so a name
that resolved to a public address at intake and to an internal one later (DNS rebinding) is
still refused. IP literals do not go through a resolver; they were checked at intake.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = [
    "CallbackAllowlist",
    "SafeResolver",
    "address_forbidden",
    "check_callback_url",
    "embedded_ipv4",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
RESOLVE_TIMEOUT_S = 2.0


class CallbackAllowlist:
    """Hosts and networks a callback may reach even though they are internal."""

    def __init__(self, entries: Sequence[str] = ()) -> None:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        self.hosts = frozenset(hosts)
        self.networks = tuple(networks)

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64):
        found.append(low32)
    if address in _IPV4_COMPATIBLE and int(address) > 0xFFFF:  # not ::, ::1 (checked as such)
        found.append(low32)
    return found


def address_forbidden(address: IPAddress) -> bool:
    """True for every address a callback must not reach by default."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address_forbidden(v4) for v4 in embedded_ipv4(address)):
            return True
        if address.ipv4_mapped is not None:
            return False  # an IPv4-mapped address is exactly its IPv4 address
    return (
        address in METADATA_ADDRESSES
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
    )
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def check_callback_url(url: str, allowlist: CallbackAllowlist) -> str | None:
    """None when ``url`` may be called back, else the reason (no address is ever echoed)."""
    parts = urlsplit(url)
    problem, host = _shape_problem(parts), parts.hostname
    if problem is not None or host is None:
        return problem or "must be an https:// URL"
    if allowlist.allows_host(host):
        return None
    try:
        port = parts.port or 443
    except ValueError:
        return "has an invalid port"
    addresses = await _addresses(host, port)
    if not addresses:
        return "has a host name that does not resolve"
    for address in addresses:
        if address_forbidden(address) and not allowlist.allows_address(address):
            return "must not point at a loopback, private, link-local or metadata address"
    return None


def _shape_problem(parts: SplitResult) -> str | None:
    """What is wrong with the URL's form (scheme, host, credentials), if anything."""
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL"
    if parts.username or parts.password:
        return "must not carry credentials"
    return None


async def _addresses(host: str, port: int) -> list[IPAddress]:
    """The host's addresses: itself when it is a literal, else what it resolves to (or none)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        return await _resolve(host, port)
    except (OSError, TimeoutError, UnicodeError, ValueError):
        return []


class SafeResolver(AbstractResolver):
    """An aiohttp resolver that drops internal addresses (unless allow-listed)."""

    def __init__(self, allowlist: CallbackAllowlist, inner: AbstractResolver | None = None) -> None:
        self.allowlist = allowlist
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self.allowlist.allows_host(host):
            return results
        safe = [r for r in results if self._safe(r)]
        if not safe:
            raise OSError(f"callback host {host!r} resolves only to internal addresses")
        return safe

    def _safe(self, result: ResolveResult) -> bool:
        address = ipaddress.ip_address(str(result["host"]).split("%", 1)[0])
        return not address_forbidden(address) or self.allowlist.allows_address(address)

    async def close(self, *args: Any) -> None:
        await self._inner.close()
