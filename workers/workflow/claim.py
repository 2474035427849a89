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
from service.core.redis import guarded

# Renew or release only while the key still holds our token.
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_DELETE_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
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

    # the lease ------------------------------------------------------------------------------
    async def acquire(self) -> bool:
        """Take the lease if free; start renewing it."""
        taken = await guarded(
            lambda: self._redis.set(self.key, self.token, nx=True, px=self._ttl_ms)
        )
        if not taken:
            return False
        self.lost = False
        self._renewer = asyncio.create_task(self._renew_loop())
        return True

    async def wait_s(self) -> float:
        """How long the current holder's lease still runs (a bound on a useful wait)."""
        left = await guarded(lambda: self._redis.pttl(self.key))
        return max(0.05, int(left) / 1000) if int(left) > 0 else 0.05

    async def confirm(self) -> None:
        """Renew now; :class:`LeaseLost` unless we still hold it (checked before a POST)."""
        if self.lost or not await self._renew():
            self.lost = True
            raise LeaseLost(self.key)

    async def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
        with contextlib.suppress(Exception):  # an unreleased lease expires by itself
            await self._eval(_DELETE_IF, self.key, self.token)

    async def _renew(self) -> bool:
        return bool(await self._eval(_RENEW, self.key, self.token, str(self._ttl_ms)))

    async def _eval(self, script: str, key: str, *args: str) -> Any:
        async def run() -> Any:
            return await cast(Awaitable[Any], self._redis.eval(script, 1, key, *args))

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
    async def note(self) -> CreateNote | None:
        raw = await guarded(lambda: self._redis.get(self.note_key))
        return None if raw is None else CreateNote.load(raw)

    async def write_note(self, note: CreateNote) -> None:
        await guarded(lambda: self._redis.set(self.note_key, note.dump(), px=self._note_ttl_ms))

    async def drop_note(self, note: CreateNote) -> None:
        """Forget ``note`` (a create Graph clearly refused), unless another replaced it."""
        await self._eval(_DELETE_IF, self.note_key, note.dump())
