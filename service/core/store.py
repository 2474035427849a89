"""Request records in Redis: durable intake, reads, listing, credentials and idempotency keys.

The keys are described and built in :mod:`service.core.keys`.

:meth:`Store.accept` writes the record, its credentials, its index entries and the arq job in
one Lua script (:mod:`service.core.store_scripts`), so a 202 never means "stored but not
queued" or the reverse. The listing indexes (per caller, and their retention) are kept by
:mod:`service.core.indexes`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from service.core.crypto import CredentialCipher
from service.core.errors import StoreUnavailable
from service.core.indexes import Indexes
from service.core.keys import Keys, job_key
from service.core.models import Credential, Record, State
from service.core.queue import FUNCTION, JOB_EXPIRES_MS, encoded_job, notification_jobs
from service.core.store_scripts import ACCEPT, HOLDER, Batch

T = TypeVar("T")

_TERMINAL = "," + ",".join(state.value for state in State if state.terminal) + ","

# Deletes KEYS[1] only while it still names ARGV[1]: a finished request releases its own
# in-flight claim, never a newer request's.
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)

# Sets KEYS[1] to ARGV[1] (TTL ARGV[2]) unless another value holds it; returns that holder.
_CLAIM = (
    "local h = redis.call('GET', KEYS[1]) "
    "if (not h) or h == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) "
    "return false end return h"
)


@dataclass(frozen=True, slots=True)
class IdempotencyEntry:
    """What an Idempotency-Key already stands for."""

    fingerprint: str
    status: int | None  # None while the first request is still being accepted
    request_id: str | None


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    """Run a Redis call, turning connection-level failures into :class:`StoreUnavailable`."""
    try:
        return await call()
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise StoreUnavailable(f"Redis is unreachable: {type(e).__name__}") from e


class Store:
    """Reads and writes provisioning records; shared by the API and the workers."""

    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str,
        record_ttl_s: int,
        cipher: CredentialCipher | None = None,
        retention_s: int | None = None,
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.record_ttl_s = record_ttl_s
        self.retention_s = record_ttl_s if retention_s is None else retention_s
        self.cipher = cipher
        self.keys = Keys(queue_name)
        self.indexes = Indexes(
            redis, self.keys, record_ttl_s=record_ttl_s, retention_s=self.retention_s
        )
        self._accept_script = redis.register_script(ACCEPT)

    # keys -------------------------------------------------------------------------------
    def record_key(self, request_id: str) -> str:
        """The Redis key of a record."""
        return self.keys.record(request_id)

    @staticmethod
    def _slot(record: Record) -> tuple[str, str]:
        """The in-flight slot: (principal, template); for a request that names a gallery app,
        whose principal is not known at intake, (its template or name, its display name)."""
        app = record.application
        if app is not None:
            name = app.application_template_id or f"name:{_digest(app.gallery_name or '')}"
            return f"app:{name}", _digest(app.display_name)
        return record.service_principal_id, record.requested_template_id or "*"

    def _inflight_key(self, record: Record) -> str:
        return self.keys.inflight(*self._slot(record))

    def _waiting_key(self, record: Record) -> str:
        return self.keys.waiting(*self._slot(record))

    # intake -----------------------------------------------------------------------------
    async def accept(
        self, record: Record, credentials: list[Credential] | None = None
    ) -> tuple[Record, bool]:
        """Store and enqueue a new request atomically; returns it and ``True``.

        While a request of the same caller for the same principal and template is queued or
        running, nothing is written and that one is returned with ``False``. While another
        caller's is, the new request is stored as queued *behind* it (no job yet; it starts
        when that one ends, see :meth:`promote_waiter`), so that a caller never learns about
        another's work."""
        creds_token = None
        if credentials:
            if self.cipher is None:
                raise ValueError("credentials given but no encryption key is configured")
            creds_token = self.cipher.encrypt(credentials)
        return await guarded(lambda: self._accept(record, creds_token))

    async def _live(self, pipe: Any, request_id: bytes | str | None) -> Record | None:
        if not request_id:
            return None
        rid = request_id.decode() if isinstance(request_id, bytes) else request_id
        raw = await pipe.get(self.record_key(rid))
        existing = Record.from_json(raw) if raw is not None else None
        return existing if existing is not None and not existing.state.terminal else None

    async def _accept(self, record: Record, creds_token: bytes | None) -> tuple[Record, bool]:
        """One ``EVALSHA`` (:data:`~service.core.store_scripts.ACCEPT`): the same decisions as a
        ``WATCH`` on the in-flight claim and waiting list would make, atomically."""
        batch = Batch()
        self.indexes.write(batch, record)
        job, now_ms = encoded_job(record.id)
        record.queued_behind = HOLDER
        json_text = record.to_json()
        record.queued_behind = None
        args = [
            self._inflight_key(record),
            self._waiting_key(record),
            self.record_key(""),
            record.id,
            record.caller,
            _TERMINAL,
            json_text,
            self.indexes.ttl_s(record),
            self.record_ttl_s,
            self.keys.credentials(record.id),
            creds_token or "",
            job_key(record.id),
            job,
            JOB_EXPIRES_MS,
            self.queue_name,
            now_ms,
            *batch.argv,
        ]
        written, value = await self._accept_script(args=args)
        if not written:
            return Record.from_json(value), False
        if value:
            record.queued_behind = value.decode()
        return record, True

    def _queue_job(
        self,
        pipe: Any,
        request_id: str,
        *,
        function: str = FUNCTION,
        job_id: str | None = None,
        defer_ms: int = 0,
    ) -> None:
        """Add an arq job to a transaction, as arq's enqueue_job writes it (the key holding
        the job, then its queue entry), unless a job with that id is already there."""
        job, now_ms = encoded_job(request_id, function=function)
        job_id = job_id or request_id
        pipe.set(job_key(job_id), job, px=JOB_EXPIRES_MS + defer_ms, nx=True)
        pipe.zadd(self.queue_name, {job_id: now_ms + defer_ms}, nx=True)

    def _write(self, pipe: Any, record: Record) -> None:
        ttl = self.indexes.ttl_s(record)
        pipe.set(self.record_key(record.id), record.to_json(), ex=ttl)
        self.indexes.write(pipe, record)

    # reads and updates ------------------------------------------------------------------
    async def get(self, request_id: str) -> Record | None:
        """The record, or None when unknown or expired."""
        raw = await guarded(lambda: self.redis.get(self.record_key(request_id)))
        return None if raw is None else Record.from_json(raw)

    async def save(self, record: Record, *, notify: bool = True) -> bool:
        """Write a record back (the worker is its only writer while it runs). A terminal state
        releases the in-flight claim so a new request for the same app can start (the first
        request queued behind it starts now), and queues the notifications (callback, ticket
        write-back) in the same transaction, unless ``notify=False``: a notification job
        saving its own delivery attempts.

        Returns whether the API asked for the request to stop (:meth:`cancel_requested`), read
        in the same transaction: a worker that saves at a step boundary needs no second round
        trip for the flag (always False for a terminal state, which clears the flag)."""

        async def run() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                self._write(pipe, record)
                if record.state.terminal:
                    self._terminal_writes(pipe, record, notify)
                else:
                    pipe.exists(self.keys.cancel(record.id))
                results = await pipe.execute()
                return not record.state.terminal and bool(results[-1])

        cancelled = await guarded(run)
        if record.state.terminal and notify:
            # A crash here is repaired by the reconciler (it promotes waiters of free slots).
            await self.promote_waiter(record)
        return cancelled

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
                            self._queue_job(pipe, waiter.id)
                        await pipe.execute()
                        if waiter is not None:
                            return waiter
                    except WatchError:
                        continue

        return await guarded(run)

    def _terminal_writes(self, pipe: Any, record: Record, notify: bool) -> None:
        """What a terminal state brings in the same transaction: the in-flight claim
        released, credentials and the cancel flag deleted, the notifications queued."""
        pipe.eval(_RELEASE, 1, self._inflight_key(record), record.id)
        pipe.lrem(self._waiting_key(record), 0, record.id)
        pipe.delete(self.keys.credentials(record.id), self.keys.cancel(record.id))
        # Queued with the terminal state itself: a crash cannot lose them.
        for function, job_id in notification_jobs(
            record.id,
            len(record.history),
            callback=notify and bool(record.callback_url),
            writeback=notify
            and record.caller.startswith("webhook:")
            and bool(record.external_reference),
        ):
            self._queue_job(pipe, record.id, function=function, job_id=job_id)

    async def save_final(self, record: Record, on_cancel: Callable[[Record], None]) -> bool:
        """The worker's last save, atomic with the cancel flag (WATCH): when a cancel was
        accepted before it, ``on_cancel`` turns the record into its cancelled form first, so
        a 202 to cancel always ends ``cancelled``. Returns True when the cancel won."""
        assert record.state.terminal
        flag = self.keys.cancel(record.id)

        async def run() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(flag)
                        won = bool(await pipe.exists(flag)) and record.state is not State.CANCELLED
                        if won:
                            on_cancel(record)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        self._write(pipe, record)
                        self._terminal_writes(pipe, record, True)
                        await pipe.execute()
                        return won
                    except WatchError:
                        continue

        won = await guarded(run)
        await self.promote_waiter(record)  # a crash before this: the reconciler promotes
        return won

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
                                self._queue_job(pipe, record.id)
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
                self._queue_job(pipe, request_id, defer_ms=defer_ms)
                try:
                    await pipe.execute()
                except WatchError:
                    return False
                return True

        return await guarded(run)

    async def list(
        self,
        *,
        state: State | None = None,
        service_principal_id: str | None = None,
        caller: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[builtins.list[Record], str | None]:
        """A page of ``caller``'s records (None: every caller's, for operators), newest first,
        and the cursor of the next page (None at the end). Reads only that caller's indexes."""
        return await guarded(
            lambda: self.indexes.page(
                caller=caller,
                state=state,
                service_principal_id=service_principal_id,
                cursor=cursor,
                limit=limit,
            )
        )

    async def trim_expired(self) -> int:
        """Drop the index entries of expired finished records (the reconciler calls this)."""
        return await guarded(self.indexes.trim_expired)

    # credentials and cancellation -------------------------------------------------------
    async def credentials(self, request_id: str) -> builtins.list[Credential] | None:
        """The decrypted credentials of a request, or None when there are none (left)."""
        token = await guarded(lambda: self.redis.get(self.keys.credentials(request_id)))
        if token is None:
            return None
        if self.cipher is None:
            raise StoreUnavailable("credentials are stored but no encryption key is configured")
        return self.cipher.decrypt(token)

    async def forget_credentials(self, request_id: str) -> None:
        """Delete the stored credentials (called once Graph has them)."""
        await guarded(lambda: self.redis.delete(self.keys.credentials(request_id)))

    async def ids_in_state(self, state: State, limit: int = 10_000) -> builtins.list[str]:
        """Ids of the records in a state, oldest first (for the reconciler)."""
        members = await guarded(
            lambda: self.redis.zrange(self.keys.by_state(state.value), 0, limit - 1)
        )
        return [m.decode() for m in members]

    async def cancel_requested(self, request_id: str) -> bool:
        """True when the API asked for this request to stop."""
        return bool(await guarded(lambda: self.redis.exists(self.keys.cancel(request_id))))

    # idempotency keys -------------------------------------------------------------------
    def _idem_key(self, caller: str, key: str) -> str:
        return self.keys.idempotency(caller, hashlib.sha256(key.encode()).hexdigest())

    async def claim_idempotency_key(
        self, caller: str, key: str, fingerprint: str, ttl_s: int
    ) -> IdempotencyEntry | None:
        """Claim an Idempotency-Key for a body; None when claimed now, else what it holds."""
        redis_key = self._idem_key(caller, key)
        pending = json.dumps({"fp": fingerprint, "status": None, "id": None})
        # The pending claim is short-lived: a crashed API must not block the key for a day.
        if await guarded(lambda: self.redis.set(redis_key, pending, nx=True, ex=30)):
            return None
        raw = await guarded(lambda: self.redis.get(redis_key))
        if raw is None:
            return await self.claim_idempotency_key(caller, key, fingerprint, ttl_s)
        data = json.loads(raw)
        return IdempotencyEntry(data["fp"], data["status"], data["id"])

    async def complete_idempotency_key(
        self, caller: str, key: str, fingerprint: str, status: int, request_id: str, ttl_s: int
    ) -> None:
        """Record the first response's status and request id for replays."""
        value = json.dumps({"fp": fingerprint, "status": status, "id": request_id})
        await guarded(lambda: self.redis.set(self._idem_key(caller, key), value, ex=ttl_s))

    async def release_idempotency_key(self, caller: str, key: str) -> None:
        """Drop a pending claim whose request was rejected, so the caller may try again."""
        await guarded(lambda: self.redis.delete(self._idem_key(caller, key)))

    # gallery apps ------------------------------------------------------------------------
    async def claim_app(
        self, template_id: str, display_name: str, request_id: str, ttl_s: int
    ) -> str | None:
        """Claim the instantiation of (template, display name) for a request, or refresh its
        own claim; None when held now, else the id of the request that holds it."""
        key = self.keys.app_claim(template_id, _digest(display_name))

        async def run() -> str | None:
            holder: Any = await self.redis.eval(_CLAIM, 1, key, request_id, str(ttl_s))  # type: ignore[misc]
            return None if not holder else str(holder.decode())

        return await guarded(run)

    async def release_app(self, template_id: str, display_name: str, request_id: str) -> None:
        """Drop a request's own instantiation claim (never another request's)."""
        key = self.keys.app_claim(template_id, _digest(display_name))

        async def run() -> None:
            await self.redis.eval(_RELEASE, 1, key, request_id)  # type: ignore[misc]

        await guarded(run)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers."""
        await guarded(self.redis.ping)


def fingerprint(payload: dict[str, Any], cipher: CredentialCipher | None = None) -> str:
    """A stable hash of a request body. Credential values are part of it, so with a cipher it
    is keyed (HMAC): a stored fingerprint cannot be brute-forced back to a weak secret. Without
    one, bodies carrying credentials are refused anyway."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    if cipher is not None:
        return cipher.mac(canonical)
    return hashlib.sha256(canonical).hexdigest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]
