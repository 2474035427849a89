"""workers/worker.py: the arq worker's functions, crons and bounds, as built for the settings."""

from __future__ import annotations

from service.core.application_store import HEALTH_CALLBACK_FUNCTION, HEALTH_WRITEBACK_FUNCTION
from service.core.queue import CALLBACK_FUNCTION, FUNCTION, WRITEBACK_FUNCTION
from service.core.settings import load_settings
from workers.worker import build_worker, recovery_bound_s, run_bound_s

NOTIFICATIONS = (
    WRITEBACK_FUNCTION,
    CALLBACK_FUNCTION,
    HEALTH_CALLBACK_FUNCTION,
    HEALTH_WRITEBACK_FUNCTION,
)


def test_every_job_function_is_registered_with_its_timeout() -> None:
    settings = load_settings(step_timeout_s=60, callback_timeout_s=10)
    worker = build_worker(settings)
    crons = {c.name for c in worker.cron_jobs}
    jobs = {name: f for name, f in worker.functions.items() if name not in crons}
    assert sorted(jobs) == sorted((FUNCTION, *NOTIFICATIONS))
    assert jobs[FUNCTION].timeout_s == 60
    for name in NOTIFICATIONS:  # one HTTP call each: the callback timeout and a margin
        assert jobs[name].timeout_s == 15, name
    assert {f.keep_result_s for f in jobs.values()} == {0}


def test_the_crons_follow_the_settings() -> None:
    on = build_worker(load_settings(watch_enabled=True, watch_interval_s=5))
    assert sorted(c.name for c in on.cron_jobs) == ["reconcile", "watch"]
    off = build_worker(load_settings(watch_enabled=False))
    assert [c.name for c in off.cron_jobs] == ["reconcile"]


def test_a_run_ends_before_arq_times_it_out() -> None:
    short = load_settings(step_timeout_s=6, callback_timeout_s=1)
    long = load_settings(step_timeout_s=60)
    assert run_bound_s(short) == 4.5
    assert run_bound_s(long) == 55
    assert recovery_bound_s(long) == 70
