"""Every Redis key from one module: each builder gives a key of its own under the deployment's
prefix, a scan pattern of one kind never matches a key of another, and two deployments on one
Redis never share a key."""

from __future__ import annotations

import inspect
from fnmatch import fnmatchcase

from service.core.keys import Keys, in_progress_key, job_key


def _builders(keys: Keys) -> dict[str, str]:
    """Every key ``keys`` builds, by builder name, with the same sample argument everywhere."""
    built: dict[str, str] = {}
    for name, member in inspect.getmembers(type(keys)):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            built[name] = getattr(keys, name)
        elif callable(member):
            arity = len(inspect.signature(member).parameters) - 1
            built[name] = getattr(keys, name)(*["x"] * arity)
    return built


def test_every_kind_of_key_is_distinct_and_under_the_prefix() -> None:
    built = _builders(Keys("dep"))
    assert len(built) >= 30
    assert len(set(built.values())) == len(built), built
    assert all(key == "dep" or key.startswith("dep:") for key in built.values())


def test_a_scan_pattern_of_one_kind_matches_no_other_kind() -> None:
    keys = Keys("dep")
    built = _builders(keys)
    for name, pattern in {
        "health_check": keys.health_check("*"),
        "cooldown": keys.cooldown("*"),
        "tenant_bucket": keys.tenant_bucket("*"),
        "intake_limit": keys.intake_limit("*"),
        "record": keys.record("*"),
    }.items():
        matched = {other for other, key in built.items() if fnmatchcase(key, pattern)}
        assert matched == {name}, (pattern, matched)


def test_two_deployments_never_share_a_key() -> None:
    one, two = set(_builders(Keys("a")).values()), set(_builders(Keys("a:b")).values())
    assert one.isdisjoint(two)


def test_a_callers_listing_and_the_operators_listing_are_apart() -> None:
    keys = Keys("dep")
    assert keys.caller_index("alice") != keys.caller_index(None)
    assert keys.caller_state(None, "queued") != keys.by_state("queued")


def test_arqs_own_keys_keep_arqs_names() -> None:
    assert job_key("rid") == "arq:job:rid"
    assert in_progress_key("rid") == "arq:in-progress:rid"
