"""The contract between the API and the workers: arq jobs as JSON, written by the API's Lua
script and read by a real arq worker's deserializer, and the notification job ids."""

from __future__ import annotations

import asyncio

import pytest
from arq.jobs import deserialize_job
from redis.asyncio import Redis

from service.core.keys import Keys, job_key
from service.core.queue import (
    CALLBACK_FUNCTION,
    FUNCTION,
    WRITEBACK_FUNCTION,
    add_job,
    encoded_job,
    job_deserializer,
    job_serializer,
    notification_jobs,
)


def test_an_encoded_job_is_what_arq_reads() -> None:
    raw, at = encoded_job("rid", enqueue_time_ms=1234)
    job = deserialize_job(raw, deserializer=job_deserializer)
    assert (job.function, list(job.args), job.kwargs) == (FUNCTION, ["rid"], {})
    assert job.enqueue_time.timestamp() == 1.234
    assert at == 1234
    assert raw.startswith(b"{")  # JSON, never pickle


async def test_a_job_due_now_is_announced_on_the_wake_channel_and_added_once(redis: Redis) -> None:
    keys = Keys("q")
    async with redis.pubsub() as sub:
        await sub.subscribe(keys.wake)
        await sub.get_message(timeout=1)  # the subscribe confirmation
        async with redis.pipeline(transaction=True) as pipe:
            add_job(pipe, keys, "due")
            add_job(pipe, keys, "later", defer_ms=60_000)
            add_job(pipe, keys, "ev", function=CALLBACK_FUNCTION, job_id="cb:ev")
            await pipe.execute()
        announced = []
        while (message := await sub.get_message(timeout=0.2)) is not None:
            announced.append(message["channel"])
    assert announced == [keys.wake.encode()] * 2  # "due" and "cb:ev", not the deferred one
    queued = dict(await redis.zrange(keys.queue, 0, -1, withscores=True))
    assert queued[b"later"] - queued[b"due"] >= 59_000
    job = deserialize_job(await redis.get(job_key("cb:ev")), deserializer=job_deserializer)
    assert (job.function, list(job.args)) == (CALLBACK_FUNCTION, ["ev"])
    before = await redis.get(job_key("due"))
    await asyncio.sleep(0.002)
    async with redis.pipeline(transaction=True) as pipe:
        add_job(pipe, keys, "due")  # a second enqueue of the same id changes nothing
        await pipe.execute()
    assert await redis.get(job_key("due")) == before
    assert (await redis.zscore(keys.queue, "due")) == queued[b"due"]


def test_results_that_are_not_json_become_their_repr_and_non_objects_are_refused() -> None:
    assert job_deserializer(job_serializer({"r": {1, 2}})) == {"r": "{1, 2}"}
    with pytest.raises(ValueError, match="JSON object"):
        job_deserializer(b"[1, 2]")


def test_notification_job_ids_are_per_terminal_transition() -> None:
    both = notification_jobs("rid", 4, callback=True, writeback=True)
    assert both == [(CALLBACK_FUNCTION, "callback:rid:4"), (WRITEBACK_FUNCTION, "writeback:rid:4")]
    assert notification_jobs("rid", 7, callback=False, writeback=True) == [
        (WRITEBACK_FUNCTION, "writeback:rid:7")
    ]
    assert notification_jobs("rid", 4, callback=False, writeback=False) == []
