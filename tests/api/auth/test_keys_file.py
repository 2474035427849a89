"""API keys from PROVISIONER_API_KEYS_FILE: revoked without a restart (mtime or SIGHUP)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.api.auth.keys import ApiKeyRing
from service.core.config_values import hash_api_key
from service.core.errors import ConfigError
from tests.api.test_routes import BASE, api_client, make_settings

KEY_A = "pk_file-key-a-3b7c"
KEY_B = "pk_file-key-b-9d1e"


def write_keys(path: Path, *entries: tuple[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    lines = ["# NAME:sha256hex", *(f"{name}:{hash_api_key(key)}" for name, key in entries)]
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)  # atomic, as docs/configuration.md asks


def test_mtime_change_is_picked_up_within_the_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    write_keys(path, ("a", KEY_A), ("b", KEY_B))
    now = [0.0]
    ring = ApiKeyRing((), path, check_every_s=5, clock=lambda: now[0])
    assert {k.name for k in ring.current()} == {"a", "b"}
    write_keys(path, ("a", KEY_A))
    os.utime(path, ns=(1, 10**18))  # make sure the mtime differs on coarse filesystems
    assert {k.name for k in ring.current()} == {"a", "b"}  # not looked at yet
    now[0] = 5.0
    assert {k.name for k in ring.current()} == {"a"}
    # A broken file keeps the previous keys.
    path.write_text("not a key line\n")
    os.utime(path, ns=(1, 2 * 10**18))
    now[0] = 10.0
    assert {k.name for k in ring.current()} == {"a"}


def test_bad_keys_file_stops_start_up(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "keys"
    path.write_text("alpha:nothex\n")
    with pytest.raises(ConfigError, match=r"^PROVISIONER_API_KEYS_FILE: "):
        make_settings(redis_url, api_keys_file=path)


async def test_sighup_revokes_a_key(tmp_path: Path, redis: Redis, redis_url: str) -> None:
    path = tmp_path / "keys"
    write_keys(path, ("a", KEY_A), ("b", KEY_B))
    settings = make_settings(redis_url, api_keys_file=path, api_keys_reload_s=3600)
    async with api_client(settings) as client:
        auth_b = {"Authorization": f"Bearer {KEY_B}"}
        assert (await client.get(BASE, headers=auth_b)).status == 200
        write_keys(path, ("a", KEY_A))
        assert (await client.get(BASE, headers=auth_b)).status == 200  # cached for an hour
        loop = asyncio.get_running_loop()
        assert signal.SIGHUP in getattr(loop, "_signal_handlers", {})  # else SIGHUP kills us
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(30):  # only against a hang: the handler runs on the loop
            while (await client.get(BASE, headers=auth_b)).status == 200:
                await asyncio.sleep(0.01)
        assert (await client.get(BASE, headers=auth_b)).status == 401
        assert (await client.get(BASE, headers={"Authorization": f"Bearer {KEY_A}"})).status == 200
    assert signal.SIGHUP not in getattr(loop, "_signal_handlers", {})
