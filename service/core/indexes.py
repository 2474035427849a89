"""Listing indexes: per caller, for operators across callers, and how they are kept bounded.

Every record is in two scopes, its caller's (``{p}:caller:{caller}:...``) and every caller's
(``{p}:all:...``, read only by operators), each with three sorted sets scored by creation time
(ms): the whole ``index``, one per ``state`` and one per service principal (``sp``). A caller's
listing reads its own scope only, so its cost does not grow with other callers' records.

Nothing grows for ever: a finished record expires ``retention_s`` after its last write, and its
entry in ``{p}:expiring`` (scored by that expiry) lets :meth:`Indexes.trim_expired` (run by the
reconciler) remove its index entries once it is gone. Each write also drops entries older than
``record_ttl_s + retention_s`` from the sets it touches (ZREMRANGEBYSCORE): a record cannot
live longer than that, so whatever is older is an orphan (for example a record that expired
while still queued).
"""

from __future__ import annotations

import base64
import builtins
import json
import time
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.models import Record, State

__all__ = ["Indexes", "decode_cursor", "encode_cursor"]

IN_FLIGHT = (State.QUEUED, State.RUNNING)


class Indexes:
    """Writes, reads and trims the listing indexes of one deployment."""

    def __init__(self, redis: Redis, keys: Keys, *, record_ttl_s: int, retention_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.record_ttl_s = record_ttl_s
        self.retention_s = retention_s

    def ttl_s(self, record: Record) -> int:
        """How long a record's key lives from this write."""
        return self.retention_s if record.state.terminal else self.record_ttl_s

    def _scoped(self, scope: str | None, record: Record) -> list[str]:
        keys = [self.keys.caller_index(scope), self.keys.caller_state(scope, record.state.value)]
        if record.service_principal_id:  # "" until instantiate_app knows an app's principal
            keys.append(self.keys.caller_principal(scope, record.service_principal_id))
        return keys

    def write(self, pipe: Any, record: Record, *, fresh: bool = False) -> None:
        """Add the record's index writes to a transaction (its key is written by the caller).
        ``fresh``: the record was never written (a new id is in no index), so no ``ZREM``s."""
        now_ms = time.time() * 1000
        entry = {record.id: record.created_at.timestamp() * 1000}
        older = f"({now_ms - (self.record_ttl_s + self.retention_s) * 1000}"
        for scope in (record.caller, None):
            for key in self._scoped(scope, record):
                pipe.zadd(key, entry)
                pipe.zremrangebyscore(key, "-inf", older)
            if fresh:
                continue
            for state in State:
                if state is not record.state:
                    pipe.zrem(self.keys.caller_state(scope, state.value), record.id)
        for state in IN_FLIGHT:
            if state is record.state:
                pipe.zadd(self.keys.by_state(state.value), entry)
            elif not fresh:
                pipe.zrem(self.keys.by_state(state.value), record.id)
        if record.state.terminal:
            member = json.dumps([record.id, record.caller, record.service_principal_id])
            pipe.zadd(self.keys.expiring, {member: now_ms + self.retention_s * 1000})

    async def trim_expired(self, *, batch: int = 1000) -> int:
        """Remove the index entries of finished records that have expired; returns how many.
        A record still present (written again since) is re-scored by its remaining TTL."""
        now_ms = time.time() * 1000
        members = await self.redis.zrangebyscore(self.keys.expiring, "-inf", now_ms, 0, batch)
        if not members:
            return 0
        ids = [json.loads(m)[0] for m in members]
        async with self.redis.pipeline(transaction=False) as pipe:
            for request_id in ids:
                pipe.pttl(self.keys.record(request_id))
            ttls = await pipe.execute()
        trimmed = 0
        async with self.redis.pipeline(transaction=True) as pipe:
            for member, ttl in zip(members, ttls, strict=True):
                request_id, caller, principal = json.loads(member)
                if int(ttl) > 0:
                    pipe.zadd(self.keys.expiring, {member: now_ms + int(ttl)})
                    continue
                trimmed += 1
                for scope in (caller, None):
                    pipe.zrem(self.keys.caller_index(scope), request_id)
                    pipe.zrem(self.keys.caller_principal(scope, principal), request_id)
                    for state in State:
                        pipe.zrem(self.keys.caller_state(scope, state.value), request_id)
                pipe.zrem(self.keys.expiring, member)
            await pipe.execute()
        return trimmed

    def _list_key(
        self, caller: str | None, state: State | None, service_principal_id: str | None
    ) -> str:
        if service_principal_id is not None:
            return self.keys.caller_principal(caller, service_principal_id)
        if state is not None:
            return self.keys.caller_state(caller, state.value)
        return self.keys.caller_index(caller)

    async def page(
        self,
        *,
        caller: str | None,
        state: State | None,
        service_principal_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[builtins.list[Record], str | None]:
        """A page of ``caller``'s records (None: every caller's), newest first, and the
        cursor of the next page (None at the end)."""
        key = self._list_key(caller, state, service_principal_id)
        max_score: float | str = "+inf"
        after_id = ""
        if cursor:
            max_score, after_id = decode_cursor(cursor)
        found: builtins.list[Record] = []
        offset = 0  # members already read at max_score (a run of equal scores)
        while len(found) < limit:
            batch = await self.redis.zrevrangebyscore(
                key, max_score, "-inf", start=offset, num=limit * 2 + 1, withscores=True
            )
            if not batch:
                return found, None
            raws = await self.redis.mget([self.keys.record(m.decode()) for m, _ in batch])
            for rid, score, rec in _readable(batch, raws, state, max_score, after_id):
                found.append(rec)
                if len(found) == limit:
                    return found, encode_cursor(score, rid)
            if len(batch) < limit * 2 + 1:
                return found, None
            last_score = batch[-1][1]
            if last_score == max_score:
                offset += len(batch)  # all ties: read on past them, not the same batch again
            else:
                max_score, after_id, offset = last_score, batch[-1][0].decode(), 0
        return found, None


def _readable(
    batch: builtins.list[tuple[bytes, float]],
    raws: builtins.list[bytes | None],
    state: State | None,
    max_score: float | str,
    after_id: str,
) -> Iterator[tuple[str, float, Record]]:
    """A batch's records in order, as (id, score, record): past the cursor, not expired, and in
    ``state`` when one is asked for."""
    for (member, score), raw in zip(batch, raws, strict=True):
        rid = member.decode()
        if after_id and score == max_score and rid >= after_id:
            continue
        if raw is None:
            continue  # expired; trim_expired removes the entry
        rec = Record.from_json(raw)
        if state is None or rec.state is state:
            yield rid, score, rec


def encode_cursor(score: float, request_id: str) -> str:
    """The opaque ``nextCursor``: the last item's score and id."""
    return base64.urlsafe_b64encode(f"{score!r}|{request_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Parse :func:`encode_cursor`'s value; ValueError for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        score, sep, request_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        if not sep:
            raise ValueError("no separator")
        return float(score), request_id
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError("cursor is not one this API returned") from e
