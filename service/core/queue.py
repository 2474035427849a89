"""The contract between the API and the workers: the arq job's name, id, key and JSON encoding,
and the names of the worker keys the API reads (health checks, tenant cool-downs).

The API enqueues by function name and never imports ``workers``. Jobs are JSON, not arq's default
pickle, so a value planted in Redis by someone who can write to it cannot run code in a worker.
The job id is the provisioning request id: arq refuses a second job with the same id, which keeps
one workflow per request even when the reconciler or a re-drive enqueues it again.
"""

from __future__ import annotations

import json
import time
from typing import Any

from arq.jobs import serialize_job

from service.core.keys import Keys, job_key

FUNCTION = "provision"
CALLBACK_FUNCTION = "deliver_callback"
WRITEBACK_FUNCTION = "write_back"
JOB_EXPIRES_MS = 86_400_000  # arq's default: the queue entry's key outlives any sane backlog


def job_serializer(data: dict[str, Any]) -> bytes:
    """Encode an arq job or result as JSON (non-JSON results become their ``repr``)."""
    return json.dumps(data, default=repr, separators=(",", ":")).encode()


def job_deserializer(raw: bytes) -> dict[str, Any]:
    """Decode what :func:`job_serializer` wrote; anything else raises instead of executing."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("an arq job must be a JSON object")
    return value


def encoded_job(
    request_id: str, enqueue_time_ms: int | None = None, function: str = FUNCTION
) -> tuple[bytes, int]:
    """The serialized arq job for a request and its enqueue time in ms (the queue score)."""
    now_ms = enqueue_time_ms if enqueue_time_ms is not None else int(time.time() * 1000)
    job = serialize_job(function, (request_id,), {}, None, now_ms, serializer=job_serializer)
    return job, now_ms


def add_job(
    pipe: Any,
    keys: Keys,
    arg: str,
    *,
    function: str = FUNCTION,
    job_id: str | None = None,
    defer_ms: int = 0,
) -> None:
    """Add an arq job to a transaction, as arq's enqueue_job writes it (the key holding the job,
    then its queue entry), unless a job with that id is already there; one due now is announced
    on the wake channel, so an idle worker polls at once instead of at its next poll."""
    job, now_ms = encoded_job(arg, function=function)
    job_id = job_id or arg
    pipe.set(job_key(job_id), job, px=JOB_EXPIRES_MS + defer_ms, nx=True)
    pipe.zadd(keys.queue, {job_id: now_ms + defer_ms}, nx=True)
    if not defer_ms:
        pipe.publish(keys.wake, "")


def notification_jobs(
    request_id: str, history_length: int, *, callback: bool, writeback: bool
) -> list[tuple[str, str]]:
    """(function, job id) of the notifications due when a request ends: the callback to its
    ``callbackUrl`` and the write-back to its ticket. The ids are per terminal transition: a
    re-driven request that ends again notifies again, a repeated save of the same end does not."""
    jobs = [(CALLBACK_FUNCTION, "callback")] if callback else []
    jobs += [(WRITEBACK_FUNCTION, "writeback")] if writeback else []
    return [(function, f"{kind}:{request_id}:{history_length}") for function, kind in jobs]
