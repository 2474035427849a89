"""The transactions over a request's in-flight slot: the next waiter promoted, a cancel, a
redrive and a re-enqueue (the final save is in :mod:`service.core.store_save`).

Each is a ``WATCH``/``MULTI`` loop, so the slot (one live request per principal and template)
and the record never disagree, whatever runs at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.exceptions import WatchError

from service.core.keys import job_key
from service.core.models import Record, State
from service.core.queue import add_job
from service.core.redis import guarded
from service.core.store_base import StoreBase


class SlotTransitions(StoreBase):
    """The slot's transactions, a part of :class:`~service.core.store.Store`."""

    async def promote_waiter(self, record: Record) -> Record | None:
        """When the (principal, template) slot of ``record`` is free, give it to the oldest
        live request queued behind it and enqueue that one; returns it (None: nothing to do)."""
        inflight, waiting = self._inflight_key(record), self._waiting_key(record)

        async def run() -> Record | None:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(inflight, waiting)
                        if await self._live(pipe, await pipe.get(inflight)) is not None:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return None
                        first = await pipe.lindex(waiting, 0)  # type: ignore[misc]
                        if first is None:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return None
                        await pipe.watch(inflight, waiting, self.record_key(first.decode()))
                        waiter = await self._live(pipe, first)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.lpop(waiting)
                        if waiter is not None:
                            waiter.queued_behind = None
                            self._write(pipe, waiter)
                            pipe.set(inflight, waiter.id, ex=self.record_ttl_s)
                            add_job(pipe, self.keys, waiter.id)
                        await pipe.execute()
                        if waiter is not None:
                            return waiter
                    except WatchError:
                        continue

        return await guarded(run)

    async def cancel(
        self, request_id: str, cancel_queued: Callable[[Record], None]
    ) -> tuple[Record | None, str]:
        """Accept a cancel unless the request is already final, atomically with its record
        (WATCH): ``("accepted")`` sets the flag the worker honours (a queued record is made
        cancelled by ``cancel_queued`` at once), ``"already"`` for a cancelled one and
        ``"too_late"`` for one that succeeded or failed; the record as it stands."""
        key = self.record_key(request_id)

        async def run() -> tuple[Record | None, str]:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        if raw is None:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return None, "unknown"
                        record = Record.from_json(raw)
                        if record.state.terminal:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            done = "already" if record.state is State.CANCELLED else "too_late"
                            return record, done
                        pipe.multi()  # type: ignore[no-untyped-call]
                        if record.state is State.QUEUED:
                            cancel_queued(record)
                            self._write(pipe, record)
                            self._terminal_writes(pipe, record, True)
                        # Kept after a queued cancel too: a worker that picked the job up
                        # meanwhile stops at its first step boundary.
                        pipe.set(self.keys.cancel(request_id), 1, ex=86400)
                        pipe.zadd(self.queue_name, {request_id: time.time() * 1000}, xx=True)
                        await pipe.execute()
                        return record, "accepted"
                    except WatchError:
                        continue

        found, outcome = await guarded(run)
        if found is not None and outcome == "accepted" and found.state.terminal:
            await self.promote_waiter(found)  # a queued request cancelled: its slot is free
        return found, outcome

    async def redrive(self, record: Record) -> tuple[Record, bool]:
        """Put a failed request back to ``queued`` with a fresh retry budget, re-claiming its
        in-flight slot and enqueuing it in one transaction. When the same caller's request
        holds the slot, returns that one and False; when another caller's does, the request
        is queued behind it (as in :meth:`accept`)."""
        inflight, waiting = self._inflight_key(record), self._waiting_key(record)

        async def run() -> tuple[Record, bool]:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(inflight, waiting, job_key(record.id))
                        holder_id = await pipe.get(inflight)
                        holder = None
                        if holder_id and holder_id.decode() != record.id:
                            holder = await self._live(pipe, holder_id)
                        if holder is not None and holder.caller == record.caller:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return holder, False
                        job_exists = await pipe.exists(job_key(record.id))
                        record.queued_behind = None if holder is None else holder.id
                        pipe.multi()  # type: ignore[no-untyped-call]
                        self._write(pipe, record)
                        if holder is None:
                            pipe.set(inflight, record.id, ex=self.record_ttl_s)
                            if not job_exists:
                                add_job(pipe, self.keys, record.id)
                        else:
                            pipe.rpush(waiting, record.id)
                            pipe.expire(waiting, self.record_ttl_s)
                        await pipe.execute()
                        return record, True
                    except WatchError:
                        continue

        return await guarded(run)

    async def enqueue(self, request_id: str, *, defer_ms: int = 0) -> bool:
        """Put a request's job back on the queue unless arq already holds one for it."""

        async def run() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                key = job_key(request_id)
                await pipe.watch(key)
                if await pipe.exists(key):
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                add_job(pipe, self.keys, request_id, defer_ms=defer_ms)
                try:
                    await pipe.execute()
                except WatchError:
                    return False
                return True

        return await guarded(run)
