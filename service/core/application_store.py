"""Applications in Redis: the records, their indexes, the watch's due set and health events.

Keys (built in :mod:`service.core.keys`): the application JSON (no expiry: a watched job is
watched until Graph says it is gone), lex-sorted sets of principal ids (all, and by health)
for listing, and the watch's sorted set of ``{sp}:{jobId}`` members scored by the next check
time in ms. Every change goes through :meth:`ApplicationStore.update`: read, change and
write back under WATCH/MULTI (or :meth:`ApplicationStore.prepare`: the request hook's change,
written by the request's final save only while the application is as read), so the request
hook and the watch never lose each other's writes, and a change of health stores its event
and queues its notifications (callback, ticket note) in the same transaction, as
:meth:`Store.save` does for a request's end.

Reads for the API and the status page: :meth:`get`, :meth:`list` (by health, paged),
:meth:`counts`.
"""

from __future__ import annotations

import builtins
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from service.core.applications import Application, HealthEvent
from service.core.health import Health
from service.core.keys import Keys
from service.core.queue import add_job
from service.core.redis import guarded
from service.core.store import Store
from service.core.store_save import Guarded


class Unread(enum.Enum):
    """Stands for "not read yet" where None means "does not exist"."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD
HEALTH_CALLBACK_FUNCTION = "deliver_health_callback"
HEALTH_WRITEBACK_FUNCTION = "write_back_health"
EVENT_TTL_S = 2 * 24 * 3600  # longer than the callback window (24 h by default)

# Takes up to ARGV[2] members due by ARGV[1] (ms) and leases them until ARGV[3] (ms): two
# ticks running at once never check the same job, and a crashed check is retried at lease end.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], member) end
return due
"""


def member(service_principal_id: str, job_id: str) -> str:
    """A job's member in the watch set."""
    return f"{service_principal_id}:{job_id}"


def split_member(value: str) -> tuple[str, str]:
    sp, _, job_id = value.partition(":")
    return sp, job_id


@dataclass(slots=True)
class Update:
    """What a change of an application does besides writing it: watch-set moves (a member's
    next check in ms, or None to stop watching it) and health events to notify."""

    watch: dict[str, float | None] = field(default_factory=dict)
    events: list[HealthEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Counts:
    """Numbers for ``/metrics``: applications with a job in each health, jobs watched, and how
    late the most overdue check is (0 when none is due)."""

    by_health: dict[Health, int]
    watched_jobs: int
    overdue_s: float


class ApplicationStore:
    """Reads and writes applications; shared by the API, the workflow's hook and the watch."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    @classmethod
    def of(cls, store: Store) -> ApplicationStore:
        return cls(store.redis, store.keys)

    # reads --------------------------------------------------------------------------------
    async def get(self, service_principal_id: str) -> Application | None:
        raw = await guarded(lambda: self.redis.get(self.keys.application(service_principal_id)))
        return None if raw is None else Application.from_json(raw)

    async def event(self, event_id: str) -> HealthEvent | None:
        raw = await guarded(lambda: self.redis.get(self.keys.application_event(event_id)))
        return None if raw is None else HealthEvent.model_validate_json(raw)

    async def list(
        self,
        *,
        health: Health | None = None,
        visible: Callable[[Application], bool] = lambda _: True,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[builtins.list[Application], str | None]:
        """A page of the visible applications (with a job in ``health``), by principal id, and
        the cursor of the next page (None at the end): the last principal id of this one."""
        key = self.keys.applications_by_health(health) if health else self.keys.applications
        start = f"({cursor}" if cursor else "-"
        found: builtins.list[Application] = []
        while True:
            batch = await guarded(
                lambda: self.redis.zrangebylex(key, start, "+", start=0, num=limit * 2)  # noqa: B023
            )
            if not batch:
                return found, None
            ids = [m.decode() for m in batch]
            raws = await guarded(
                lambda: self.redis.mget([self.keys.application(i) for i in ids])  # noqa: B023
            )
            for sp, raw in zip(ids, raws, strict=True):
                app = None if raw is None else Application.from_json(raw)
                if app is None or not visible(app):
                    continue
                if health is not None and health not in app.healths():
                    continue
                found.append(app)
                if len(found) == limit:
                    return found, sp
            if len(batch) < limit * 2:
                return found, None
            start = f"({ids[-1]}"

    async def counts(self) -> Counts:
        async with self.redis.pipeline(transaction=False) as pipe:
            for h in Health:
                pipe.zcard(self.keys.applications_by_health(h))
            pipe.zcard(self.keys.watch)
            pipe.zrange(self.keys.watch, 0, 0, withscores=True)
            *cards, watched, first = await pipe.execute()
        overdue = time.time() - first[0][1] / 1000 if first else 0.0
        return Counts(dict(zip(Health, cards, strict=True)), int(watched), max(0.0, overdue))

    # the watch ----------------------------------------------------------------------------
    async def claim_due(
        self, now_ms: float, limit: int, lease_ms: float
    ) -> builtins.list[tuple[str, str]]:
        """Up to ``limit`` (principal, job) pairs due by ``now_ms``, most overdue first, each
        leased for ``lease_ms`` (re-checked then if its check never records a result)."""
        due = await guarded(
            lambda: self.redis.eval(  # type: ignore[arg-type,return-value]
                _CLAIM,
                1,
                self.keys.watch,
                str(int(now_ms)),
                str(limit),
                str(int(now_ms + lease_ms)),
            )
        )
        return [split_member(m.decode() if isinstance(m, bytes) else m) for m in due]

    async def forget(self, service_principal_id: str, job_id: str) -> None:
        """Stop watching a member whose application or job is not there any more."""
        await guarded(
            lambda: self.redis.zrem(self.keys.watch, member(service_principal_id, job_id))
        )

    # writes -------------------------------------------------------------------------------
    async def update(
        self,
        service_principal_id: str,
        change: Callable[[Application], Update | None],
        *,
        create: bool = False,
    ) -> Application | None:
        """Apply ``change`` to the application (a new one when ``create``) and write it back
        with its indexes, watch moves and events, atomically; None when there is none, or when
        ``change`` returns None (nothing to write)."""
        key = self.keys.application(service_principal_id)

        async def run() -> Application | None:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        if raw is None and not create:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return None
                        app = (
                            Application.from_json(raw)
                            if raw is not None
                            else Application(service_principal_id=service_principal_id)
                        )
                        before = app.healths() if raw is not None else set()
                        result = change(app)
                        if result is None:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return app
                        pipe.multi()  # type: ignore[no-untyped-call]
                        self._write(pipe, app, before, result)
                        await pipe.execute()
                        return app
                    except WatchError:
                        continue

        return await guarded(run)

    async def prepare(
        self,
        service_principal_id: str,
        change: Callable[[Application], Update | None],
        *,
        create: bool = False,
        current: bytes | Unread | None = UNREAD,
    ) -> Guarded | None:
        """:meth:`update`'s read and change, with its writes returned instead of run: for a
        save that runs them only while the application is still as read
        (:meth:`Store.save_final`); None when there is nothing to write. ``current``: the
        application's JSON (None: it does not exist) when the caller knows or guesses it, so
        no read is made; the guarded save tells a wrong guess."""
        key = self.keys.application(service_principal_id)
        raw = await guarded(lambda: self.redis.get(key)) if current is UNREAD else current
        if raw is None and not create:
            return None
        app = Application.from_json(raw) if raw is not None else None
        app = app or Application(service_principal_id=service_principal_id)
        before = app.healths() if raw is not None else set()
        result = change(app)
        if result is None:
            return None
        prepared = Guarded(key, raw)
        self._write(prepared.writes, app, before, result)
        return prepared

    def _write(self, pipe: Any, app: Application, before: set[Health], result: Update) -> None:
        sp = app.service_principal_id
        pipe.set(self.keys.application(sp), app.to_json())
        pipe.zadd(self.keys.applications, {sp: 0})
        now = app.healths()
        for h in before - now:
            pipe.zrem(self.keys.applications_by_health(h), sp)
        for h in now:
            pipe.zadd(self.keys.applications_by_health(h), {sp: 0})
        for name, due_ms in result.watch.items():
            if due_ms is None:
                pipe.zrem(self.keys.watch, name)
            else:
                pipe.zadd(self.keys.watch, {name: due_ms})
        for event in result.events:
            pipe.set(self.keys.application_event(event.id), event.model_dump_json(), ex=EVENT_TTL_S)
            if event.callback_url:
                add_job(
                    pipe,
                    self.keys,
                    event.id,
                    function=HEALTH_CALLBACK_FUNCTION,
                    job_id=f"healthcb:{event.id}",
                )
            if event.caller.startswith("webhook:") and event.external_reference:
                add_job(
                    pipe,
                    self.keys,
                    event.id,
                    function=HEALTH_WRITEBACK_FUNCTION,
                    job_id=f"healthwb:{event.id}",
                )
