"""The contract between the API and the workers: arq jobs as JSON, written by the API's Lua
script and read by a real arq worker's deserializer, and the notification job ids."""

from __future__ import annotations

import pytest
from arq.jobs import deserialize_job

from service.core.queue import (
    CALLBACK_FUNCTION,
    FUNCTION,
    WRITEBACK_FUNCTION,
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
