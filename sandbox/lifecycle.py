"""Lifecycle routes of the sandbox (issue 12): provisionOnDemand with Graph's documented limit
(5 calls per 10 s per tenant, 429 + Retry-After beyond), a configurable failure per subject,
and pause / restart / delete wrapped so their calls (and each restart's criteria) are counted.

Test-only control: ``PUT /_sandbox/on-demand`` ``{"failSubjects": {"<objectId>": "reason"}}``
makes provisionOnDemand report a failed export step for those subjects; ``GET
/_sandbox/lifecycle`` returns the counters. Pure handlers; faults, auth and error bodies stay
in the middleware (app.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox import graph
from sandbox.context import CTX_KEY
from sandbox.models import GraphError, bad_request

ON_DEMAND_LIMIT = 5
ON_DEMAND_WINDOW_S = 10.0
SYNCFABRIC = "https://syncfabric.windowsazure.com/api/$metadata"  # Graph's own example context


@dataclass
class LifecycleState:
    """What the lifecycle routes remember (reset with ``DELETE /_sandbox/lifecycle``)."""

    fail_subjects: dict[str, str] = field(default_factory=dict)
    window: deque[float] = field(default_factory=deque)  # accepted provisionOnDemand (clock s)
    on_demand: Counter[str] = field(default_factory=Counter)  # by answer: 200, 429, failed
    max_in_window: int = 0
    restarts: list[dict[str, Any]] = field(default_factory=list)
    pauses: Counter[str] = field(default_factory=Counter)
    deletes: Counter[str] = field(default_factory=Counter)
    subjects: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        fresh = LifecycleState()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def json(self) -> dict[str, Any]:
        return {
            "failSubjects": dict(self.fail_subjects),
            "onDemand": dict(self.on_demand),
            "onDemandMaxInWindow": self.max_in_window,
            "onDemandSubjects": dict(self.subjects),
            "restarts": list(self.restarts),
            "pauses": dict(self.pauses),
            "deletes": dict(self.deletes),
        }


LIFECYCLE_KEY = web.AppKey("lifecycle", LifecycleState)


def _lc(request: web.Request) -> LifecycleState:
    return request.app[LIFECYCLE_KEY]


# -- wrapped job routes ------------------------------------------------------------------------
async def pause_job(request: web.Request) -> web.StreamResponse:
    response = await graph.pause_job(request)
    _lc(request).pauses[request.match_info["job"]] += 1
    return response


async def restart_job(request: web.Request) -> web.StreamResponse:
    response = await graph.restart_job(request)  # validates the criteria (400 when unknown)
    text = await request.text()  # aiohttp keeps the body: the same bytes graph.restart_job read
    data = json.loads(text) if text.strip() else {}
    criteria = data.get("criteria") if isinstance(data, dict) else None
    scope = criteria.get("resetScope") if isinstance(criteria, dict) else None
    _lc(request).restarts.append({"jobId": request.match_info["job"], "resetScope": scope})
    return response


async def delete_job(request: web.Request) -> web.StreamResponse:
    response = await graph.delete_job(request)
    _lc(request).deletes[request.match_info["job"]] += 1
    return response


# -- provisionOnDemand -------------------------------------------------------------------------
def _subjects(data: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    params = data.get("parameters")
    if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], dict):
        raise bad_request("'parameters' must hold one synchronizationJobApplicationParameters.")
    rule_id, subjects = params[0].get("ruleId"), params[0].get("subjects")
    if not isinstance(rule_id, str) or not rule_id:
        raise bad_request("'ruleId' is required.")
    if not isinstance(subjects, list) or not subjects:
        raise bad_request("'subjects' must list at least one subject.")
    for s in subjects:
        if not isinstance(s, dict) or not isinstance(s.get("objectId"), str):
            raise bad_request("Each subject needs an 'objectId'.")
        if s.get("objectTypeName") not in {"User", "Group"}:
            raise bad_request("'objectTypeName' must be 'User' or 'Group'.")
    return rule_id, subjects


def _step(name: str, kind: str, status: str, description: str) -> dict[str, Any]:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "name": name,
        "type": kind,
        "status": status,
        "description": description,
        "timestamp": stamp,
        "details": {},
    }


def _answer(subject: dict[str, str], target: str, failure: str | None) -> dict[str, Any]:
    oid, kind = subject["objectId"], subject["objectTypeName"]
    steps = [
        _step("EntryImport", "Import", "Success", f"Retrieved {kind} '{oid}' from Entra ID"),
        _step("EntrySynchronizationScoping", "Scoping", "Success", "In scope"),
        _step("EntryExportAdd", "Export", "Failure" if failure else "Success",
              failure or f"{kind} '{oid}' was created in {target}"),
    ]  # fmt: skip
    status: dict[str, Any] = {"status": "Failure" if failure else "Success"}
    if failure:
        status["errorInformation"] = {"errorCode": "SandboxExportFailed", "reason": failure}
    value = {
        "provisioningSteps": steps,
        "action": "Create",
        "statusInfo": status,
        "sourceIdentity": {"id": oid, "type": kind},
        "reportableIdentifier": oid,
    }
    key: dict[str, Any] = {"result": "Failure" if failure else "Success", "details": {}}
    return {"key": json.dumps(key), "value": json.dumps(value)}


async def provision_on_demand(request: web.Request) -> web.StreamResponse:
    ctx, lc = request.app[CTX_KEY], _lc(request)
    sp = request.match_info["sp"]
    job = ctx.state.job(sp, request.match_info["job"])
    data = await graph._body(request, required=True)
    rule_id, subjects = _subjects(data)
    name, targets = ctx.state.gallery.target(sp)
    schema = ctx.state.gallery.schemas.get(job.id, name, targets)
    rules = {r.get("id") for r in schema.get("synchronizationRules") or []}
    if rule_id not in rules:
        raise bad_request(f"The rule '{rule_id}' is not a synchronization rule of this job.")
    now = ctx.config.clock()
    while lc.window and lc.window[0] <= now - ON_DEMAND_WINDOW_S:
        lc.window.popleft()
    if len(lc.window) >= ON_DEMAND_LIMIT:
        lc.on_demand["429"] += 1
        wait = lc.window[0] + ON_DEMAND_WINDOW_S - now
        raise _TooMany(wait)
    lc.window.append(now)
    lc.max_in_window = max(lc.max_in_window, len(lc.window))
    subject = subjects[0]
    lc.subjects[subject["objectId"]] += 1
    failure = lc.fail_subjects.get(subject["objectId"].lower())
    lc.on_demand["failed" if failure else "200"] += 1
    context = f"{SYNCFABRIC}#microsoft.synchronization.stringKeyStringValuePair"
    return graph.graph_json({"@odata.context": context, **_answer(subject, name, failure)})


class _TooMany(GraphError):
    """A 429 with Retry-After, as Graph answers past 5 calls in 10 s."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(429, "TooManyRequests", "Please retry again later.")
        self.retry_after = str(max(1, int(wait_s + 0.999)))


# -- control -----------------------------------------------------------------------------------
async def put_on_demand(request: web.Request) -> web.Response:
    data = await request.json()
    fail = data.get("failSubjects", {}) if isinstance(data, dict) else None
    if not isinstance(fail, dict) or not all(isinstance(v, str) for v in fail.values()):
        return web.json_response({"error": "failSubjects must map objectId -> reason"}, status=400)
    _lc(request).fail_subjects = {str(k).lower(): v for k, v in fail.items()}
    return web.json_response(_lc(request).json())


async def get_lifecycle(request: web.Request) -> web.Response:
    return web.json_response(_lc(request).json())


async def reset_lifecycle(request: web.Request) -> web.Response:
    _lc(request).reset()
    return web.json_response({})


CONTROL_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("PUT", "/_sandbox/on-demand", put_on_demand),
    ("GET", "/_sandbox/lifecycle", get_lifecycle),
    ("DELETE", "/_sandbox/lifecycle", reset_lifecycle),
)
