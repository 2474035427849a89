"""The parts every store operation shares: the record's keys and in-flight slot, and the writes
a transaction makes for a record (its body and indexes, its arq job, what a terminal state
brings).

:class:`~service.core.store.Store` is built from this base and the operations over it (as
redis-py builds its client from command mixins), so each module holds one kind of operation.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis

from service.core.crypto import CredentialCipher
from service.core.indexes import Indexes
from service.core.keys import Keys
from service.core.models import Record, State
from service.core.queue import add_job, notification_jobs
from service.core.store_scripts import ACCEPT

TERMINAL = "," + ",".join(state.value for state in State if state.terminal) + ","

# Deletes KEYS[1] only while it still names ARGV[1]: a finished request releases its own
# in-flight claim, never a newer request's.
RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


class StoreBase:
    """The connection, keys and shared writes of :class:`~service.core.store.Store`."""

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
            name = app.application_template_id or f"name:{digest(app.gallery_name or '')}"
            return f"app:{name}", digest(app.display_name)
        return record.service_principal_id, record.requested_template_id or "*"

    def _inflight_key(self, record: Record) -> str:
        return self.keys.inflight(*self._slot(record))

    def _waiting_key(self, record: Record) -> str:
        return self.keys.waiting(*self._slot(record))

    async def _live(self, pipe: Any, request_id: bytes | str | None) -> Record | None:
        if not request_id:
            return None
        rid = request_id.decode() if isinstance(request_id, bytes) else request_id
        raw = await pipe.get(self.record_key(rid))
        existing = Record.from_json(raw) if raw is not None else None
        return existing if existing is not None and not existing.state.terminal else None

    def _write(self, pipe: Any, record: Record) -> None:
        ttl = self.indexes.ttl_s(record)
        pipe.set(self.record_key(record.id), record.to_json(), ex=ttl)
        self.indexes.write(pipe, record)

    def _terminal_writes(self, pipe: Any, record: Record, notify: bool) -> None:
        """What a terminal state brings in the same transaction: the in-flight claim
        released, credentials and the cancel flag deleted, the notifications queued."""
        pipe.eval(RELEASE, 1, self._inflight_key(record), record.id)
        pipe.lrem(self._waiting_key(record), 0, record.id)
        pipe.delete(self.keys.credentials(record.id), self.keys.cancel(record.id))
        self._queue_notifications(pipe, record, notify)

    def _queue_notifications(self, pipe: Any, record: Record, notify: bool) -> None:
        """The notification jobs of a terminal state (callback, ticket write-back), added to
        the transaction that writes it: a crash cannot lose them."""
        for function, job_id in notification_jobs(
            record.id,
            len(record.history),
            callback=notify and bool(record.callback_url),
            writeback=notify
            and record.caller.startswith("webhook:")
            and bool(record.external_reference),
        ):
            add_job(pipe, self.keys, record.id, function=function, job_id=job_id)


def digest(text: str) -> str:
    """A short stable digest of a name, for keys."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]
