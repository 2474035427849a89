"""The ``SyncAll`` secret for a request's ``scope``, merged into save_secrets' one PUT.

``SyncAll`` "determines scope of sync between all users and groups or only ones that are
assigned" (REF v1.0-synchronization-synchronizationsecretkeystringvaluepair.md); the PUT
example sends the string ``"false"``. The secrets PUT documents no replace-all semantics, so
the caller's credentials and ``SyncAll`` go in one PUT without reading the saved ones first.
"""

from __future__ import annotations

from service.core.models import Record


def sync_all_secret(record: Record) -> dict[str, str] | None:
    """The ``SyncAll`` pair for the request's scope (``all`` -> ``"true"``, ``assigned`` ->
    ``"false"``), or None when the request leaves the scope as it is."""
    if record.scope is None:
        return None
    return {"key": "SyncAll", "value": "true" if record.scope == "all" else "false"}
