"""SSRF guard for ``callbackUrl``: https only, and never an internal address.

The host is resolved (``loop.getaddrinfo``) and every address it resolves to must be public:
loopback, private (RFC 1918, ULA), link-local, multicast, reserved, unspecified, shared (CGNAT)
and the cloud metadata addresses (169.254.169.254, fd00:ec2::254) are refused, unless the host
or the address is in ``PROVISIONER_CALLBACK_ALLOWLIST`` (host names, IP addresses or CIDR
ranges). A host that does not resolve is refused too: fail closed.

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
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = ["CallbackAllowlist", "SafeResolver", "address_forbidden", "check_callback_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
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


def address_forbidden(address: IPAddress) -> bool:
    """True for every address a callback must not reach by default."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_forbidden(address.ipv4_mapped)
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
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL"
    if parts.username or parts.password:
        return "must not carry credentials"
    host = parts.hostname
    if allowlist.allows_host(host):
        return None
    try:
        port = parts.port or 443
    except ValueError:
        return "has an invalid port"
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await _resolve(host, port)
        except (OSError, TimeoutError, UnicodeError, ValueError):
            return "has a host name that does not resolve"
    if not addresses:
        return "has a host name that does not resolve"
    for address in addresses:
        if address_forbidden(address) and not allowlist.allows_address(address):
            return "must not point at a loopback, private, link-local or metadata address"
    return None


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
