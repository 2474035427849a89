"""What the status page's tests share: signing in over real HTTP, planting records and
applications (through the watch's own rules), an access policy with an operator."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from service.api.state import STORE
from service.core.application_store import ApplicationStore, Update
from service.core.applications import Application, Reading
from service.core.config_values import hash_api_key
from service.core.fields import utcnow
from service.core.keys import Keys
from service.core.models import ErrorInfo, HistoryEntry, Outcome, Record, State, Step
from service.core.settings import Settings
from tests.api.test_routes import API_KEY, OTHER_KEY, make_settings, sp
from workers.watch.rules import Schedule, observed, registered

XSS = "<script>alert('x')</script>"
XSS_ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
QUEUE = "provisioner:queue"
K = Keys(QUEUE)


def origin(client: TestClient[Any, Any]) -> dict[str, str]:
    """The same-host ``Origin`` header the POSTs need."""
    return {"Origin": str(client.make_url("")).rstrip("/")}


async def login(client: TestClient[Any, Any], key: str = API_KEY) -> Any:
    """``POST /ui/login`` with ``key`` (the cookie jar keeps the session)."""
    return await client.post(
        "/ui/login", data={"apiKey": key}, headers=origin(client), allow_redirects=False
    )


async def add_record(client: TestClient[Any, Any], caller: str = "alpha", **fields: Any) -> Record:
    """Store a record directly, as the workers would have left it."""
    fields.setdefault("service_principal_id", sp(1))
    fields.setdefault("created_at", utcnow())
    record = Record(caller=caller, **fields)
    await client.app[STORE].save(record, notify=False)
    return record


def failed_record() -> dict[str, Any]:
    """A failed request whose text fields hold markup."""
    at = utcnow() - timedelta(seconds=5)
    return {
        "id": "a" * 32,
        "state": State.FAILED,
        "template_id": "scim",
        "external_reference": XSS,
        "attempts": 2,
        "history": [
            HistoryEntry(
                step=Step.RESOLVE_TEMPLATE,
                outcome=Outcome.SUCCEEDED,
                at=at,
                attempt=1,
                duration_ms=1234,
                graph_status=200,
                graph_request_id="11111111-2222-3333-4444-555555555555",
                client_request_id="cccccccc-2222-3333-4444-555555555555",
                message="template scim",
            ),
            HistoryEntry(
                step=Step.CREATE_JOB,
                outcome=Outcome.FAILED,
                at=at + timedelta(seconds=1),
                attempt=2,
                duration_ms=87,
                graph_status=400,
                graph_request_id="99999999-8888-7777-6666-555555555555",
                message=f"bad <b>request</b> {XSS}",
            ),
        ],
        "error": ErrorInfo(
            code="BadRequest",
            message=f"Graph said no {XSS}",
            graph_status=400,
            graph_request_id="99999999-8888-7777-6666-555555555555",
            details={"why": XSS},
        ),
    }


OPS_KEY = "ops-secret-key"
KEYS = f"alpha:{hash_api_key(API_KEY)},beta:{hash_api_key(OTHER_KEY)},ops:{hash_api_key(OPS_KEY)}"
SCHEDULE = Schedule((60, 300), 0.0, 1)


def operator_settings(redis_url: str, tmp_path: Path) -> Settings:
    """Three callers: alpha and beta (read, write) and ops (read, write, operator)."""
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "callers": {
                    "alpha": {"permissions": ["read", "write"]},
                    "beta": {"permissions": ["read", "write"]},
                    "ops": {"permissions": ["read", "write", "operator"]},
                }
            }
        )
    )
    return make_settings(redis_url, api_keys=KEYS, access_policy_file=policy)


async def add_application(
    client: TestClient[Any, Any],
    principal: str,
    caller: str = "alpha",
    *readings: Reading,
    template: str = "scim",
    **fields: Any,
) -> Record:
    """A succeeded request of ``caller`` whose job the watch registered, then read as each of
    ``readings`` in turn (each a check of the job), as the watch would have left it."""
    fields.setdefault("id", uuid.uuid4().hex)
    record = await add_record(
        client,
        caller,
        service_principal_id=principal,
        state=State.SUCCEEDED,
        template_id=template,
        job_id=f"{template}.{principal[-4:]}",
        **fields,
    )
    apps = ApplicationStore.of(client.app[STORE])
    await apps.update(
        principal, lambda app: registered(app, record, utcnow(), SCHEDULE).update, create=True
    )
    for reading in readings:

        def check(app: Application, reading: Reading = reading) -> Update:
            job = app.job(record.job_id or "")
            assert job is not None
            return observed(app, job, reading, utcnow(), SCHEDULE).update

        await apps.update(principal, check)
    return record
