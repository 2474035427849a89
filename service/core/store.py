"""Request records in Redis: durable intake, reads, listing, credentials and idempotency keys.

The keys are described and built in :mod:`service.core.keys`.

:meth:`Store.accept` writes the record, its credentials, its index entries and the arq job in
one MULTI/EXEC, so a 202 never means "stored but not queued" or the reverse.
"""

from __future__ import annotations

import base64
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
from service.core.keys import Keys, job_key
from service.core.models import Credential, Record, State
from service.core.queue import FUNCTION, JOB_EXPIRES_MS, encoded_job, notification_jobs

T = TypeVar("T")

# Deletes KEYS[1] only while it still names ARGV[1]: a finished request releases its own
# in-flight claim, never a newer request's.
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
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
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.record_ttl_s = record_ttl_s
        self.cipher = cipher
        self.keys = Keys(queue_name)

    # keys -------------------------------------------------------------------------------
    def record_key(self, request_id: str) -> str:
        """The Redis key of a record."""
        return self.keys.record(request_id)

    def _inflight_key(self, record: Record) -> str:
        return self.keys.inflight(record.service_principal_id, record.requested_template_id or "*")

    def _index_keys(self, record: Record) -> tuple[str, str]:
        return self.keys.index, self.keys.by_principal(record.service_principal_id)

    def _state_key(self, state: State) -> str:
        return self.keys.by_state(state.value)

    # intake -----------------------------------------------------------------------------
    async def accept(
        self, record: Record, credentials: list[Credential] | None = None
    ) -> tuple[Record, bool]:
        """Store and enqueue a new request atomically, unless one for the same principal and
        template is still queued or running: then return that one and ``False``."""
        creds_token = None
        if credentials:
            if self.cipher is None:
                raise ValueError("credentials given but no encryption key is configured")
            creds_token = self.cipher.encrypt(credentials)
        inflight = self._inflight_key(record)
        return await guarded(lambda: self._accept(record, inflight, creds_token))

    async def _accept(
        self, record: Record, inflight: str, creds_token: bytes | None
    ) -> tuple[Record, bool]:
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(inflight)
                    existing_id = await pipe.get(inflight)
                    if existing_id:
                        raw = await pipe.get(self.record_key(existing_id.decode()))
                        if raw is not None:
                            existing = Record.from_json(raw)
                            if not existing.state.terminal:
                                await pipe.reset()  # type: ignore[no-untyped-call]
                                return existing, False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(inflight, record.id, ex=self.record_ttl_s)
                    if creds_token is not None:
                        pipe.set(
                            self.keys.credentials(record.id), creds_token, ex=self.record_ttl_s
                        )
                    self._write(pipe, record)
                    self._queue_job(pipe, record.id)
                    await pipe.execute()
                    return record, True
                except WatchError:
                    continue

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
        score = record.created_at.timestamp() * 1000
        pipe.set(self.record_key(record.id), record.to_json(), ex=self.record_ttl_s)
        for key in self._index_keys(record):
            pipe.zadd(key, {record.id: score})
        for state in State:
            if state is record.state:
                pipe.zadd(self._state_key(state), {record.id: score})
            else:
                pipe.zrem(self._state_key(state), record.id)

    # reads and updates ------------------------------------------------------------------
    async def get(self, request_id: str) -> Record | None:
        """The record, or None when unknown or expired."""
        raw = await guarded(lambda: self.redis.get(self.record_key(request_id)))
        return None if raw is None else Record.from_json(raw)

    async def save(self, record: Record, *, notify: bool = True) -> None:
        """Write a record back (the worker is its only writer while it runs). A terminal state
        releases the in-flight claim so a new request for the same app can start, and queues
        the notifications (callback, ticket write-back) in the same transaction, unless
        ``notify=False``: a notification job saving its own delivery attempts."""

        async def run() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                self._write(pipe, record)
                if record.state.terminal:
                    self._terminal_writes(pipe, record, notify)
                await pipe.execute()

        await guarded(run)

    def _terminal_writes(self, pipe: Any, record: Record, notify: bool) -> None:
        """What a terminal state brings in the same transaction: the in-flight claim
        released, credentials and the cancel flag deleted, the notifications queued."""
        pipe.eval(_RELEASE, 1, self._inflight_key(record), record.id)
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

        return await guarded(run)

    async def redrive(self, record: Record) -> tuple[Record, bool]:
        """Put a failed request back to ``queued`` with a fresh retry budget, re-claiming its
        in-flight slot and enqueuing it in one transaction. Returns the request now in flight
        for the same principal and template and False when another one holds the slot."""
        inflight = self._inflight_key(record)

        async def run() -> tuple[Record, bool]:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(inflight, job_key(record.id))
                        holder = await pipe.get(inflight)
                        if holder and holder.decode() != record.id:
                            raw = await pipe.get(self.record_key(holder.decode()))
                            other = Record.from_json(raw) if raw is not None else None
                            if other is not None and not other.state.terminal:
                                await pipe.reset()  # type: ignore[no-untyped-call]
                                return other, False
                        job_exists = await pipe.exists(job_key(record.id))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(inflight, record.id, ex=self.record_ttl_s)
                        self._write(pipe, record)
                        if not job_exists:
                            self._queue_job(pipe, record.id)
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
        """A page of records, newest first, and the cursor of the next page (None at the end)."""
        if service_principal_id is not None:
            key = self.keys.by_principal(service_principal_id)
        elif state is not None:
            key = self._state_key(state)
        else:
            key = self.keys.index
        max_score: float | str = "+inf"
        after_id = ""
        if cursor:
            max_score, after_id = _decode_cursor(cursor)
        found: builtins.list[Record] = []
        offset = 0  # members already read at max_score (a run of equal scores)
        while len(found) < limit:
            top, skip = max_score, offset
            batch = await guarded(
                lambda: self.redis.zrevrangebyscore(
                    key,
                    top,  # noqa: B023 - awaited before the loop moves on
                    "-inf",
                    start=skip,  # noqa: B023
                    num=limit * 2 + 1,
                    withscores=True,
                )
            )
            if not batch:
                return found, None
            keys = [self.record_key(member.decode()) for member, _ in batch]
            raws = await guarded(lambda: self.redis.mget(keys))  # noqa: B023
            for (member, score), raw in zip(batch, raws, strict=True):
                rid = member.decode()
                if after_id and score == max_score and rid >= after_id:
                    continue
                if raw is None:
                    continue  # expired record; its index entry is trimmed lazily
                rec = Record.from_json(raw)
                if state is not None and rec.state is not state:
                    continue
                if caller is not None and rec.caller != caller:
                    continue
                found.append(rec)
                if len(found) == limit:
                    return found, _encode_cursor(score, rid)
            last_score = batch[-1][1]
            if len(batch) < limit * 2 + 1:
                return found, None
            if last_score == max_score:
                offset += len(batch)  # all ties: read on past them, not the same batch again
            else:
                max_score, after_id, offset = last_score, batch[-1][0].decode(), 0
        return found, None

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

    async def request_cancel(self, request_id: str) -> None:
        """Flag a request for cancellation at the worker's next step boundary, and bring a
        job that is waiting out a deferral forward so the flag is seen now, not later."""

        async def run() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.cancel(request_id), 1, ex=86400)
                pipe.zadd(self.queue_name, {request_id: time.time() * 1000}, xx=True)
                await pipe.execute()

        await guarded(run)

    async def ids_in_state(self, state: State, limit: int = 10_000) -> builtins.list[str]:
        """Ids of the records in a state, oldest first (for the reconciler)."""
        members = await guarded(lambda: self.redis.zrange(self._state_key(state), 0, limit - 1))
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


def _encode_cursor(score: float, request_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}|{request_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        score, _, request_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        return float(score), request_id
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError("cursor is not one this API returned") from e
