"""What the status page's tests share: signing in over real HTTP and planting records."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from service.api.state import STORE
from service.core.keys import Keys
from service.core.models import ErrorInfo, HistoryEntry, Outcome, Record, State, Step, utcnow
from tests.api.test_routes import API_KEY, sp

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
