"""One job per (principal, template): a lease on the RESOLVED pair, and a note of unseen creates.

Two Redis keys per (principal, template), both built in :mod:`service.core.keys`:

- the **claim** (``job-claim``): a lease whose value is a random owner token, ``SET NX PX``.
  A run holds it from the job list to the recorded job id, so two runs never list-then-POST at
  once. While held it is renewed every third of its TTL; it is released (compare-and-delete on
  the token) when the run leaves the critical section for any reason. A SIGKILLed holder stops
  renewing, so the lease expires after ``job_claim_ttl_s`` and another run takes it over.
- the **create note** (``job-create``): written before a POST (``sentAt``) and completed with the
  job id once Graph's answer names it. It outlives the claim by the settle budget, so whoever
  holds the claim next knows that a create went out which Graph's job list may not show yet
  (lost answer, 5xx after the job was made, a holder killed mid-POST) and waits for the list
  instead of POSTing again. A run that takes the claim over after a crash therefore never
  creates a second job while the first one may still appear.

Each move is one round trip: the lease is taken and the note read in one script (the note can
only change under the lease, so it is current for the holder); the note is written, the lease
renewed and the record saved in one (:meth:`JobClaim.save_noted`, before the POST); the note
completed and the lease released with the create step's own save (:meth:`JobClaim.complete`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis

from service.core.keys import Keys
from service.core.models import Record
from service.core.redis import guarded
from service.core.store import Store
from service.core.store_save import Release, Writes

# Renew or release only while the key still holds our token.
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_DELETE_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
# Take the lease KEYS[1] (token ARGV[1], PX ARGV[2]) if free: {1, the note KEYS[2]}; else
# {0, the lease's PTTL}.
_ACQUIRE = (
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
    "return {1, redis.call('GET', KEYS[2])} end return {0, redis.call('PTTL', KEYS[1])}"
)


@dataclass(frozen=True, slots=True)
class CreateNote:
    """A create POST for the pair: when it was sent, by which request, and the job it made
    (None while Graph's answer was not seen)."""

    sent_at: datetime
    request_id: str
    job_id: str | None = None

    def dump(self) -> str:
        return json.dumps(
            {"sentAt": self.sent_at.isoformat(), "requestId": self.request_id, "jobId": self.job_id}
        )

    @classmethod
    def load(cls, raw: bytes | str) -> CreateNote:
        data = json.loads(raw)
        return cls(datetime.fromisoformat(data["sentAt"]), data["requestId"], data.get("jobId"))


class LeaseLost(Exception):
    """The claim expired or was taken over while we held it: do not POST."""


class JobClaim:
    """The lease and create note of one resolved (principal, template)."""

    def __init__(
        self, redis: Redis, keys: Keys, sp: str, template: str, ttl_s: float, note_ttl_s: float
    ) -> None:
        self._redis = redis
        self.key = keys.job_claim(sp, template)
        self.note_key = keys.job_create(sp, template)
        self._ttl_ms = max(1000, int(ttl_s * 1000))
        self._note_ttl_ms = max(1000, int(note_ttl_s * 1000))
        self.token = secrets.token_hex(16)
        self._renewer: asyncio.Task[None] | None = None
        self.lost = False
        self._held = False
        #: The create note as it stood when the lease was taken (None: no create noted).
        self.seen_note: CreateNote | None = None
        self._left_ms = 0

    # the lease ------------------------------------------------------------------------------
    async def acquire(self) -> bool:
        """Take the lease if free and read the note (:attr:`seen_note`); start renewing."""
        taken, value = await self._eval(
            _ACQUIRE, self.key, self.token, str(self._ttl_ms), keys=(self.note_key,)
        )
        if not taken:
            self._left_ms = int(value)
            return False
        self.seen_note = None if value is None else CreateNote.load(value)
        self.lost = False
        self._held = True
        self._renewer = asyncio.create_task(self._renew_loop())
        return True

    async def wait_s(self) -> float:
        """How long the holder's lease still ran when :meth:`acquire` failed (a bound on a
        useful wait)."""
        return max(0.05, self._left_ms / 1000) if self._left_ms > 0 else 0.05

    async def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours (and not released yet)."""
        await self._stop_renewing()
        if not self._held:
            return
        self._held = False
        with contextlib.suppress(Exception):  # an unreleased lease expires by itself
            await self._eval(_DELETE_IF, self.key, self.token)

    async def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None

    async def _renew(self) -> bool:
        return bool(await self._eval(_RENEW, self.key, self.token, str(self._ttl_ms)))

    async def _eval(self, script: str, key: str, *args: str, keys: tuple[str, ...] = ()) -> Any:
        async def run() -> Any:
            call = self._redis.eval(script, 1 + len(keys), key, *keys, *args)
            return await cast(Awaitable[Any], call)

        return await guarded(run)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                if not await self._renew():
                    self.lost = True
                    return
            except Exception:
                self.lost = True
                return

    # the create note ------------------------------------------------------------------------
    async def save_noted(self, store: Store, record: Record, note: CreateNote) -> CreateNote:
        """Right before a POST: write ``note`` and save ``record`` with its ``createSentAt``
        in one script, which also renews the lease; returns the note. :class:`LeaseLost`
        (nothing written, the record as it was) unless we still hold the lease."""
        lease = (self.key, self.token, self._ttl_ms)
        writes = Writes()
        writes.set(self.note_key, note.dump(), px=self._note_ttl_ms)
        before, record.create_sent_at = record.create_sent_at, note.sent_at
        if self.lost or await store.save_leased(record, lease, writes) is None:
            self.lost = True
            record.create_sent_at = before
            raise LeaseLost(self.key)
        return note

    async def complete(self, note: CreateNote) -> Release:
        """The note naming the job Graph's answer made, and the lease's release, for the
        create step's own save to write (one round trip for both): renewing stops now. A
        crash before that save leaves the note as it was before the POST and the lease to
        expire, as a crash just before the answer would."""
        await self._stop_renewing()
        self._held = False
        release = Release((self.key, self.token))
        release.writes.set(self.note_key, note.dump(), px=self._note_ttl_ms)
        return release

    async def drop_note(self, note: CreateNote) -> None:
        """Forget ``note`` (a create Graph clearly refused), unless another replaced it."""
        await self._eval(_DELETE_IF, self.note_key, note.dump())
