"""The worker's saves of a record, each one ``EVALSHA`` (:data:`SAVE`).

A save writes the record and reads the cancel flag in the same round trip. The listing indexes
(:mod:`service.core.indexes`) depend only on a record's state and principal, so they are
rewritten only when the stored record's differ: the script compares them with the stored JSON,
and the store sends the index writes only when it did not itself write that state and
principal last (a save without them that finds a change writes nothing and asks for them). A
terminal save also releases the in-flight slot, deletes the credentials and the cancel flag and
queues the notifications, atomically; the final save first checks the cancel flag, as a
``WATCH`` on it did, and the next request waiting for the slot is promoted only when one is
waiting. A save under a lease (the create claim's note before a POST) writes nothing unless the
lease is still held; a save can also release a lease (the create claim, completed with the
step that created the job). A step's save can carry another part's script to run after it in
the same round trip (:class:`Then`: the throttle's take of the slot for the call that follows).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from service.core.models import Record, State
from service.core.redis import guarded
from service.core.store_scripts import Batch
from service.core.store_slots import SlotTransitions

# ARGV: 1 record key, 2 record JSON, 3 ttl s, 4 state, 5 principal, 6 cancel key, 7 mode
#       ("step", "final" or "check": final unless the cancel flag is set), 8 in-flight key,
#       9 waiting key, 10 request id, 11 lease key ("": none), 12 lease token, 13 lease px
#       (0: release the lease if still held, after the writes, instead of requiring it),
#       14 guarded key ("": none), 15 "1" when it must hold 16, "0" when it must not exist,
#       17 n = ARGV length of the index writes, 18..17+n the index writes, then the other
#       writes (both as Batch.argv).
# Returns {0, cancel flag (step) or waiters' count (final)}, {1, 0}: the cancel flag is set
# (check: nothing written), {2, 0}: the lease is not held, {3, 0}: the indexes must be
# rewritten and were not sent, {4, what the guarded key holds}: it is not as expected (nothing
# written in each case).
SAVE = """
local function run(from, to)
  local i = from
  while i <= to do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
end
if ARGV[11] ~= '' and ARGV[13] ~= '0' then
  if redis.call('GET', ARGV[11]) ~= ARGV[12] then return {2, 0} end
  redis.call('PEXPIRE', ARGV[11], ARGV[13])
end
local mode = ARGV[7]
if mode == 'check' and redis.call('EXISTS', ARGV[6]) == 1 then return {1, 0} end
if ARGV[14] ~= '' then
  local now = redis.call('GET', ARGV[14])
  if (ARGV[15] == '1' and now ~= ARGV[16]) or (ARGV[15] == '0' and now) then return {4, now} end
end
local n = tonumber(ARGV[17])
local old = redis.call('GET', ARGV[1])
local same = false
if old then
  same = string.match(old, '"state":"([^"]*)"') == ARGV[4]
    and string.match(old, '"servicePrincipalId":"([^"]*)"') == ARGV[5]
end
if not same then
  if n == 0 then return {3, 0} end
  run(18, 17 + n)
end
redis.call('SET', ARGV[1], ARGV[2], 'EX', ARGV[3])
run(18 + n, #ARGV)
if ARGV[11] ~= '' and ARGV[13] == '0' and redis.call('GET', ARGV[11]) == ARGV[12] then
  redis.call('DEL', ARGV[11])
end
if mode == 'step' then return {0, redis.call('EXISTS', ARGV[6])} end
if redis.call('GET', ARGV[8]) == ARGV[10] then redis.call('DEL', ARGV[8]) end
redis.call('LREM', ARGV[9], 0, ARGV[10])
redis.call('DEL', ARGV[6])
return {0, redis.call('LLEN', ARGV[9])}
"""

#: Where the store remembers the (state, principal) it wrote last per record, as a hint for
#: sending the index writes; cleared when it grows past this (the script checks anyway).
_HINTS_MAX = 50_000


class Writes(Batch):
    """:class:`~service.core.store_scripts.Batch` plus the writes a save's script runs besides
    the indexes (what :func:`~service.core.queue.add_job`, the create note and an application's
    write use)."""

    def set(
        self,
        name: str,
        value: str | bytes,
        *,
        ex: int | None = None,
        px: int | None = None,
        nx: bool = False,
    ) -> None:
        expiry = ["EX", ex] if ex is not None else ["PX", px] if px is not None else []
        self._add("SET", name, value, *expiry, *(["NX"] * nx))

    def delete(self, *names: str) -> None:
        self._add("DEL", *names)

    def publish(self, channel: str, message: str) -> None:
        self._add("PUBLISH", channel, message)


@dataclass(frozen=True, slots=True)
class Release:
    """Writes to run with a step's save, then the lease ``(key, token)`` to delete if it is
    still ours: a claim's last move in the same round trip as the step's record."""

    lease: tuple[str, str]
    writes: Writes = field(default_factory=Writes)


@dataclass(frozen=True, slots=True)
class Guarded:
    """Writes to run with a save only while ``key`` still holds ``expected`` (None: while it
    does not exist): a read-change-write of another record, without a WATCH."""

    key: str
    expected: bytes | None
    writes: Writes = field(default_factory=Writes)


@dataclass(slots=True)
class Then:
    """A script of another part, run right after a step's save in the same round trip, only
    when the save wrote and found no cancel: the tenant throttle's take of the slot for the
    call that follows (:meth:`workers.workflow.throttle.Throttle.take_ahead`). ``script``
    reads ``KEYS`` and ``ARGV`` as a script of its own would; its answer lands in ``reply``
    (None: it did not run)."""

    script: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    reply: Any = None


#: SAVE, then a Then's script, in one script: ARGV[1] = n, ARGV[2..n+1] SAVE's ARGV, the rest
#: the other script's ARGV; KEYS are the other script's. Returns SAVE's answer, plus the other
#: script's as a third element when it ran.
_SAVE_THEN = """
local function save(ARGV)
%s
end
local function after(KEYS, ARGV)
%s
end
local n = tonumber(ARGV[1])
local r = save({unpack(ARGV, 2, n + 1)})
if r[1] ~= 0 or r[2] ~= 0 then return r end
return {r[1], r[2], after(KEYS, {unpack(ARGV, n + 2, #ARGV)})}
"""


class Saves(SlotTransitions):
    """The saves of a record, a part of :class:`~service.core.store.Store`."""

    def __init__(self, redis: Redis, **options: Any) -> None:
        super().__init__(redis, **options)
        self._save_script = redis.register_script(SAVE)
        self._save_then: dict[str, Any] = {}  # a Then's script -> SAVE then it, registered
        self._hints: dict[str, tuple[str, str]] = {}

    async def save(
        self,
        record: Record,
        *,
        notify: bool = True,
        release: Release | None = None,
        then: Then | None = None,
    ) -> bool:
        """Write a record back (the worker is its only writer while it runs). A terminal state
        releases the in-flight claim so a new request for the same app can start (the first
        request queued behind it starts now), and queues the notifications (callback, ticket
        write-back) in the same script, unless ``notify=False``: a notification job saving its
        own delivery attempts.

        Returns whether the API asked for the request to stop (:meth:`cancel_requested`), read
        in the same round trip: a worker that saves at a step boundary needs no second one for
        the flag (always False for a terminal state, which clears the flag). ``release``:
        writes and a lease release that go with this save (:class:`Release`). ``then``: a
        script to run after a step's save that wrote and found no cancel (:class:`Then`)."""
        mode = "final" if record.state.terminal else "step"
        lease = writes = None
        if release is not None:
            lease, writes = (*release.lease, 0), release.writes
        if mode == "final":
            then = None
        _, value = await self._save(
            record, mode, notify=notify, lease=lease, writes=writes, then=then
        )
        if mode == "final":
            if value and notify:
                # A crash before this is repaired by the reconciler (it promotes waiters).
                await self.promote_waiter(record)
            return False
        return bool(value)

    async def save_final(
        self,
        record: Record,
        on_cancel: Callable[[Record], None],
        with_writes: Callable[..., Awaitable[Guarded | None]] | None = None,
    ) -> bool:
        """The worker's last save, atomic with the cancel flag: when a cancel was accepted
        before it, nothing is written, ``on_cancel`` turns the record into its cancelled form
        and that is saved, so a 202 to cancel always ends ``cancelled``. ``with_writes``
        prepares writes of another record saved in the same script (the health watch's
        application): called without arguments first (it may read that record, or guess it),
        then with the value the script found whenever that differed from what it expected
        (the writes are prepared again from it, with no read of their own). Returns True when
        the cancel won."""
        assert record.state.terminal
        won = False
        mode = "final" if record.state is State.CANCELLED else "check"
        guard = None if with_writes is None else await with_writes()
        while True:
            status, value = await self._save(record, mode, guard=guard)
            if status == 1:  # the writes prepared for the outcome reached are kept
                won, mode = True, "final"
                on_cancel(record)
            elif status == 4:  # value: what the guarded record holds now
                guard = None if with_writes is None else await with_writes(value)
            else:
                break
        if value:  # the waiters' count
            await self.promote_waiter(record)  # a crash before this: the reconciler promotes
        return won

    async def save_leased(
        self, record: Record, lease: tuple[str, str, int], writes: Writes
    ) -> bool | None:
        """Save a running record and run ``writes`` with it, only while the lease
        ``(key, token, ttl ms)`` is held (renewed by the same script): None when it is not
        (nothing written), else the cancel flag."""
        status, value = await self._save(record, "step", lease=lease, writes=writes)
        return None if status == 2 else bool(value)

    async def _save(
        self,
        record: Record,
        mode: str,
        *,
        notify: bool = True,
        lease: tuple[str, str, int] | None = None,
        writes: Writes | None = None,
        guard: Guarded | None = None,
        then: Then | None = None,
    ) -> tuple[int, Any]:
        hints = self._hints
        marker = (record.state.value, record.service_principal_id)
        send_indexes = hints.get(record.id) != marker
        status, value = await guarded(
            lambda: self._run_save(record, mode, notify, lease, writes, guard, send_indexes, then)
        )
        if status == 3:  # the stored record was not as this store last wrote it
            status, value = await guarded(
                lambda: self._run_save(record, mode, notify, lease, writes, guard, True, then)
            )
        if status == 0:
            if len(hints) > _HINTS_MAX:
                hints.clear()
            if record.state.terminal:
                hints.pop(record.id, None)
            else:
                hints[record.id] = marker
        return status, value

    async def _run_save(
        self,
        record: Record,
        mode: str,
        notify: bool,
        lease: tuple[str, str, int] | None,
        writes: Writes | None,
        guard: Guarded | None,
        send_indexes: bool,
        then: Then | None = None,
    ) -> tuple[int, Any]:
        """The script's answer: (status, the cancel flag or waiters' count as an int, or
        for status 4 what the guarded key holds)."""
        indexes, other = Writes(), Writes()
        if send_indexes:
            self.indexes.write(indexes, record)
        if writes is not None:
            other.argv.extend(writes.argv)
        if record.state.terminal:
            other.delete(self.keys.credentials(record.id))
            self._queue_notifications(other, record, notify)
        lease_key, token, px = lease or ("", "", 0)
        if guard is not None:
            other.argv.extend(guard.writes.argv)
        expected = b"" if guard is None or guard.expected is None else guard.expected
        args = [
            self.record_key(record.id),
            record.to_json(),
            self.indexes.ttl_s(record),
            record.state.value,
            record.service_principal_id,
            self.keys.cancel(record.id),
            mode,
            self._inflight_key(record),
            self._waiting_key(record),
            record.id,
            lease_key,
            token,
            px,
            "" if guard is None else guard.key,
            "0" if guard is None or guard.expected is None else "1",
            expected,
            len(indexes.argv),
            *indexes.argv,
            *other.argv,
        ]
        if then is None:
            status, value = await self._save_script(args=args)
        else:
            script = self._save_then.get(then.script)
            if script is None:
                script = self.redis.register_script(_SAVE_THEN % (SAVE, then.script))
                self._save_then[then.script] = script
            status, value, *after = await script(
                keys=then.keys, args=[len(args), *args, *then.args]
            )
            then.reply = after[0] if after else None
        return int(status), value if int(status) == 4 else int(value)
