"""Request records in Redis: durable intake, reads, listing, credentials and gallery claims.

The keys are described and built in :mod:`service.core.keys`.

:meth:`Store.accept` writes the record, its credentials, its index entries and the arq job in
one Lua script (:mod:`service.core.store_scripts`), so a 202 never means "stored but not
queued" or the reverse. The listing indexes (per caller, and their retention) are kept by
:mod:`service.core.indexes`; the slot's transactions are in :mod:`service.core.store_slots`,
the Idempotency-Key claims in :mod:`service.core.idempotency`, the worker's saves in
:mod:`service.core.store_save`.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from typing import Any

from service.core.errors import StoreUnavailable
from service.core.idempotency import (
    IdempotencyClaim,
    IdempotencyEntry,
    IdempotencyKeys,
)
from service.core.keys import job_key
from service.core.models import Record, State
from service.core.queue import JOB_EXPIRES_MS, encoded_job
from service.core.redis import guarded
from service.core.request import Credential
from service.core.store_base import RELEASE, TERMINAL, digest
from service.core.store_save import Saves
from service.core.store_scripts import HOLDER, Batch
from service.core.store_slots import SlotTransitions

# Sets KEYS[1] to ARGV[1] (TTL ARGV[2]) unless another value holds it; returns that holder.
_CLAIM = (
    "local h = redis.call('GET', KEYS[1]) "
    "if (not h) or h == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) "
    "return false end return h"
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What :meth:`Store.accept_keyed` did: the record stored now (``created``), the caller's
    own in-flight one (nothing written), or, with ``replay``, nothing (the key's answer)."""

    record: Record
    created: bool
    replay: IdempotencyEntry | None = None


class Store(Saves, SlotTransitions, IdempotencyKeys):
    """Reads and writes provisioning records; shared by the API and the workers."""

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
        accepted = await self.accept_keyed(record, credentials, None)
        return accepted.record, accepted.created

    async def accept_keyed(
        self,
        record: Record,
        credentials: list[Credential] | None,
        idempotency: IdempotencyClaim | None,
    ) -> Accepted:
        """:meth:`accept` with an Idempotency-Key read and completed in the same script: when
        the key already holds an answer nothing is written and :attr:`Accepted.replay` is what
        it holds; else it is completed with 202 for the new record, or 200 for the caller's own
        in-flight request when that one has the same body (another body leaves the key free:
        the caller gets a 409 and may try again)."""
        creds_token = None
        if credentials:
            if self.cipher is None:
                raise ValueError("credentials given but no encryption key is configured")
            creds_token = self.cipher.encrypt(credentials)
        return await guarded(lambda: self._accept(record, creds_token, idempotency))

    async def _accept(
        self, record: Record, creds_token: bytes | None, claim: IdempotencyClaim | None
    ) -> Accepted:
        """One ``EVALSHA`` (:data:`~service.core.store_scripts.ACCEPT`): the same decisions as a
        ``WATCH`` on the key, the in-flight claim and the waiting list would make, atomically."""
        batch = Batch()
        self.indexes.write(batch, record, fresh=True)
        job, now_ms = encoded_job(record.id)
        record.queued_behind = HOLDER
        json_text = record.to_json()
        record.queued_behind = None
        ikey, fp, ittl = ("", "", 0) if claim is None else self.claim_argv(record.caller, claim)
        small = {
            "inflight": self._inflight_key(record),
            "waiting": self._waiting_key(record),
            "rprefix": self.record_key(""),
            "id": record.id,
            "caller": record.caller,
            "terminal": TERMINAL,
            "rttl": str(self.indexes.ttl_s(record)),
            "cttl": str(self.record_ttl_s),
            "ckey": self.keys.credentials(record.id),
            "creds": creds_token.decode() if creds_token else "",
            "jkey": job_key(record.id),
            "jpx": str(JOB_EXPIRES_MS),
            "queue": self.queue_name,
            "score": str(now_ms),
            "wake": self.keys.wake,
            "index": batch.argv,
            "ikey": ikey,
            "fp": fp,
            "ittl": str(ittl),
        }
        args: list[str | bytes] = [json.dumps(small, separators=(",", ":")), json_text, job]
        outcome, value = await self._accept_script(args=args)
        if outcome == 2:
            return Accepted(record, False, IdempotencyEntry.from_json(value))
        if outcome == 0:
            return Accepted(Record.from_json(value), False)
        if value:
            record.queued_behind = value.decode()
        return Accepted(record, True)

    async def get(self, request_id: str) -> Record | None:
        """The record, or None when unknown or expired."""
        raw = await guarded(lambda: self.redis.get(self.record_key(request_id)))
        return None if raw is None else Record.from_json(raw)

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

    # gallery apps ------------------------------------------------------------------------
    async def claim_app(
        self, template_id: str, display_name: str, request_id: str, ttl_s: int
    ) -> str | None:
        """Claim the instantiation of (template, display name) for a request, or refresh its
        own claim; None when held now, else the id of the request that holds it."""
        key = self.keys.app_claim(template_id, digest(display_name))

        async def run() -> str | None:
            holder: Any = await self.redis.eval(_CLAIM, 1, key, request_id, str(ttl_s))  # type: ignore[misc]
            return None if not holder else str(holder.decode())

        return await guarded(run)

    async def release_app(self, template_id: str, display_name: str, request_id: str) -> None:
        """Drop a request's own instantiation claim (never another request's)."""
        key = self.keys.app_claim(template_id, digest(display_name))

        async def run() -> None:
            await self.redis.eval(RELEASE, 1, key, request_id)  # type: ignore[misc]

        await guarded(run)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers."""
        await guarded(self.redis.ping)
