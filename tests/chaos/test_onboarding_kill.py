"""Issue 13: ``kill -9`` the worker after its instantiate call was sent and before the answer
came back; the request still ends ``succeeded`` with exactly one application.

The sandbox makes the app at once and holds the answer 4 s, and its principal list omits the
new app for 25 s, longer than the replacement worker takes to pick the request up (arq's
in-progress key, ~16 s): only the ``instantiate_sent_at`` note written before the POST keeps
the replacement from sending a second instantiate while the list does not show the first app.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from sandbox.seed import load_seed
from service.core.models import Record
from service.core.specs import ApplicationSpec
from tests.chaos.stack import (
    RECOVERY_S,
    SEED,
    Records,
    env_for,
    kill9,
    processes,
    wait_for,
)
from tests.helpers.sandbox import start_sandbox

pytestmark = pytest.mark.chaos

SERVICENOW = "6f3b2a4e-1c55-4a8e-9b1e-5d2c8f7a9e01"
ONBOARDING_SEED = {
    **SEED,
    "applications": [
        {
            **SEED["applications"][0],  # type: ignore[index]
            "roles": [
                "Synchronization.ReadWrite.All",
                "Application.ReadWrite.All",
                "AppRoleAssignment.ReadWrite.All",
            ],
        }
    ],
    "generate": {"count": 0},
    "applicationTemplates": [t.model_dump() for t in load_seed().applicationTemplates],
}
LIST_LAG_MS = 25_000


async def test_sigkill_after_instantiate_was_sent_still_one_app(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    faults = {
        "activation_delay_ms": 100,
        "gallery": {
            "instantiate_delay_ms": 4000,
            "principal_list_lag_ms": LIST_LAG_MS,
            "new_principal_lag_ms": 1000,
        },
    }
    sandbox = start_sandbox(tmp_path / "sandbox", seed=ONBOARDING_SEED, faults=faults)
    try:
        queue = "chaos-onboarding-kill"
        env = env_for(
            sandbox,
            redis_url,
            queue,
            PROVISIONER_INSTANTIATE_SETTLE_S="60",
            PROVISIONER_APP_POLL_S="1",
        )
        records = Records(redis, queue)
        with processes(tmp_path) as procs:
            worker = procs.worker(env, "onboard-1")
            record = Record(
                id=uuid.uuid4().hex,
                service_principal_id="",
                caller="chaos",
                application=ApplicationSpec.model_validate(
                    {"applicationTemplateId": SERVICENOW, "displayName": "Killed mid-call"}
                ),
                scope="assigned",
            )
            _, created = await records.store.accept(record)
            assert created

            async def sent() -> bool:
                rec = await records.get(record.id)
                made = sandbox.stats()["gallery"].get("instantiated", 0)
                return rec.instantiate_sent_at is not None and made == 1

            await wait_for(sent, timeout_s=30, interval_s=0.05)
            kill9(worker)  # the answer is still held by the sandbox
            killed_at = time.monotonic()
            procs.worker(env, "onboard-2")
            done = await records.terminal(record.id, timeout_s=RECOVERY_S + LIST_LAG_MS / 1000 + 40)
            took = time.monotonic() - killed_at
        assert done.state.value == "succeeded", (done.error, done.history)
        gallery = sandbox.stats()["gallery"]
        assert gallery["instantiated"] == 1, gallery["apps"]
        [app] = gallery["apps"]
        assert done.service_principal_id == app["id"]
        steps = {h.step.value: h.outcome.value for h in done.history if h.step}
        assert steps["instantiate_app"] == "adopted"
        assert gallery["syncAll"][app["id"]] == "false"
        print(f"\nONBOARDING KILL: one app, recovered and finished {took:.1f}s after the kill")
    finally:
        sandbox.stop()
