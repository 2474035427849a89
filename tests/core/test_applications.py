"""Applications: the schedule table, the watch's rules and the store on a real Redis."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import pytest

from service.core.application_store import (
    member,
)
from service.core.applications import (
    GONE,
    NOT_CHECKED,
    Application,
    QuarantineView,
    Reading,
    WatchedJob,
    first_delay_s,
    next_delay_s,
)
from service.core.errors import ConfigError
from service.core.fields import utcnow
from service.core.health import Health
from service.core.models import Record, State
from service.core.settings import load_settings
from workers.watch.rules import Schedule, missing, observed, registered, unreadable

SP = "6f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c"
DEFAULT = (60, 300, 900, 3600, 21600)


# the schedule table --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "base"), [(0, 60), (1, 300), (2, 900), (3, 3600), (4, 21600), (5, 21600), (99, 21600)]
)
def test_each_step_waits_its_delay_shortened_by_at_most_the_jitter(step: int, base: int) -> None:
    rng = random.Random(7)
    delays = [next_delay_s(DEFAULT, step, 0.1, rng) for _ in range(500)]
    assert all(base * 0.9 <= d <= base for d in delays)
    assert max(delays) - min(delays) > base * 0.05  # really spread, not a constant
    assert next_delay_s(DEFAULT, step, 0.0) == base


def test_first_check_comes_within_the_first_delay_less_a_tick() -> None:
    rng = random.Random(1)
    assert all(first_delay_s(DEFAULT, 5, 0.1, rng) <= 55 for _ in range(500))
    assert first_delay_s((2, 4), 5, 0.0) == 1.0  # never below a second


def test_settings_read_the_schedule_and_refuse_a_late_first_check() -> None:
    settings = load_settings(watch_schedule="30, 120,600")
    assert settings.watch_schedule == (30, 120, 600)
    assert load_settings().watch_schedule == DEFAULT
    with pytest.raises(ConfigError, match="PROVISIONER_WATCH_SCHEDULE: the first check"):
        load_settings(watch_schedule="300,600")
    with pytest.raises(ConfigError, match="PROVISIONER_WATCH_SCHEDULE: expected"):
        load_settings(watch_schedule="1m,5m")
    with pytest.raises(ConfigError, match="PROVISIONER_WATCH_SCHEDULE: needs"):
        load_settings(watch_schedule="0")


def test_ten_thousand_jobs_on_the_default_schedule_fit_the_default_cap() -> None:
    settings = load_settings()
    steady_calls_per_s = 10_000 / (DEFAULT[-1] * (1 - settings.watch_jitter))
    assert 0.46 < 10_000 / DEFAULT[-1] < 0.47
    assert steady_calls_per_s < settings.watch_max_calls_per_s


# the rules -----------------------------------------------------------------------------------
def _record(job_id: str = "scim.job1", **extra: object) -> Record:
    return Record(
        id=uuid.uuid4().hex,
        service_principal_id=SP,
        state=State.SUCCEEDED,
        template_id="scim",
        job_id=job_id,
        caller="alpha",
        callback_url="https://portal.example/cb",
        **extra,  # type: ignore[arg-type]
    )


SCHEDULE = Schedule((10, 20, 40), 0.0, 1, random.Random(0))
QUARANTINED = Reading(
    health=Health.QUARANTINED,
    reason="quarantined (EncounteredQuarantineException)",
    schedule_state="Active",
    status_code="Paused",
    quarantine=QuarantineView(reason="EncounteredQuarantineException"),
)
HEALTHY = Reading(health=Health.HEALTHY, reason="scheduled and running", status_code="Active")


def _watched_healthy() -> tuple[Application, WatchedJob, datetime]:
    """An application whose one job a request registered and a first check read healthy."""
    app = Application(service_principal_id=SP)
    now = utcnow()
    registered(app, _record(), now, SCHEDULE)
    job = app.job("scim.job1")
    assert job is not None
    observed(app, job, HEALTHY, now, SCHEDULE)
    return app, job, now


def test_a_request_registers_its_job_and_a_change_resets_the_schedule() -> None:
    app = Application(service_principal_id=SP)
    now = utcnow()
    record = _record()
    result = registered(app, record, now, SCHEDULE)
    job = app.job("scim.job1")
    assert job is not None
    assert job.health is Health.UNKNOWN
    assert job.reason == NOT_CHECKED
    assert job.next_check_at == now + timedelta(seconds=9)  # first delay less one tick
    assert result.update.watch == {
        member(SP, "scim.job1"): (now + timedelta(seconds=9)).timestamp() * 1000
    }
    assert app.request_ids == [record.id]
    assert app.callers == ["alpha"]

    first = observed(app, job, HEALTHY, now, SCHEDULE)  # what the request said: no event
    assert first.change is not None
    assert first.update.events == []
    assert job.step == 0
    assert job.next_check_at == now + timedelta(seconds=10)
    same = observed(app, job, HEALTHY, now, SCHEDULE)
    assert same.change is None
    assert job.step == 1
    observed(app, job, HEALTHY, now, SCHEDULE)
    observed(app, job, HEALTHY, now, SCHEDULE)
    assert job.step == 2  # the last delay repeats

    later = now + timedelta(minutes=5)
    changed = observed(app, job, QUARANTINED, later, SCHEDULE)
    assert changed.change is not None
    assert (changed.change.from_, changed.change.to) == (Health.HEALTHY, Health.QUARANTINED)
    assert job.step == 0
    assert job.next_check_at == later + timedelta(seconds=10)
    assert job.health_since == later
    assert job.history[-1] == changed.change
    [event] = changed.update.events
    assert event.health is Health.QUARANTINED
    assert event.previous is Health.HEALTHY
    assert event.callback_url == "https://portal.example/cb"
    assert event.request_id == record.id


def test_a_first_reading_that_contradicts_the_request_is_told() -> None:
    app = Application(service_principal_id=SP)
    registered(app, _record(), utcnow(), SCHEDULE)
    job = app.job("scim.job1")
    assert job is not None
    assert observed(app, job, QUARANTINED, utcnow(), SCHEDULE).update.events


def test_a_404_is_confirmed_then_the_job_is_gone_and_not_watched() -> None:
    app, job, now = _watched_healthy()
    once = missing(app, job, now, SCHEDULE)
    assert once.change is None
    assert job.watching
    assert job.health is Health.HEALTHY
    assert job.next_check_at == now + timedelta(seconds=10)
    again = missing(app, job, now + timedelta(seconds=10), SCHEDULE)
    assert again.change is not None
    assert again.change.to is Health.UNKNOWN
    assert job.reason == GONE
    assert not job.watching
    assert job.next_check_at is None
    assert again.update.watch == {member(SP, "scim.job1"): None}
    assert again.update.events[0].reason == GONE
    # a 404 then a reading clears the suspicion
    registered(app, _record(), now, SCHEDULE)
    missing(app, job, now, SCHEDULE)
    observed(app, job, HEALTHY, now, SCHEDULE)
    assert job.missing_since is None
    assert job.watching


def test_a_check_that_read_nothing_keeps_the_health_and_the_step() -> None:
    app, job, now = _watched_healthy()
    observed(app, job, HEALTHY, now, SCHEDULE)
    result = unreadable(app, job, "HTTP 503 ServiceUnavailable", None, now, SCHEDULE)
    assert result.change is None
    assert job.health is Health.HEALTHY
    assert job.step == 1
    assert job.last_error == "HTTP 503 ServiceUnavailable"
    assert job.next_check_at == now + timedelta(seconds=20)
    unreadable(app, job, "tenant throttle", 3.0, now, SCHEDULE)
    assert job.next_check_at == now + timedelta(seconds=3)
