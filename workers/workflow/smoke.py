"""The smoke test (issue 12): after start, provision one real user or group on demand.

The rule id comes from the job's schema: the first synchronization rule with an object mapping
whose source object is the subject's type (``User`` or ``Group``), else the schema's only rule
(docs/workflow.md, "Smoke test"). The call takes a slot of the tenant's shared provisionOnDemand
window first (:class:`service.core.ondemand_limit.OnDemandLimiter`, 5 calls per 10 s for all
workers), right before it is sent, so Graph's own limit is never reached. Each step of Graph's
answer goes to the history line and the record's ``smokeTestResult``; a failed step ends the
request ``failed`` with ``SmokeTestFailed`` and Graph's reason.
"""

from __future__ import annotations

from service.core.errors import SmokeTestFailed
from service.core.models import Outcome, SmokeTestResult, SmokeTestStep, Step
from service.core.ondemand_limit import OnDemandLimiter
from workers.graph.ondemand import OnDemandResult
from workers.graph.response import GraphResponse
from workers.graph.schema import SynchronizationSchema
from workers.workflow.retry import CallKind
from workers.workflow.steps import StepResult, Steps


class _SlotWait(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"provisionOnDemand window full for {seconds:.2f}s")
        self.seconds = seconds


def pick_rule(schema: SynchronizationSchema, object_type: str) -> str | None:
    """The rule whose object mappings read the subject's type from the source directory."""
    rules = [r for r in schema.synchronization_rules if r.id]
    for rule in rules:
        if any(m.source_object_name == object_type for m in rule.object_mappings):
            return rule.id
    return rules[0].id if len(rules) == 1 else None


def limiter_for(s: Steps) -> OnDemandLimiter:
    settings = s.deps.settings
    return OnDemandLimiter(
        s.deps.store.redis,
        s.deps.store.keys,
        settings.tenant_id or "default",
        limit=settings.on_demand_limit,
        window_s=settings.on_demand_window_s,
    )


async def smoke_test(s: Steps) -> StepResult:
    """GET the schema for the rule id, then POST provisionOnDemand for the subject."""
    rec = s.record
    spec = rec.smoke_test
    if spec is None:
        return StepResult(Outcome.SKIPPED, message="no smoke test asked", silent=True)
    assert rec.job_id is not None
    job_id = rec.job_id
    if rec.smoke_rule_id is None:
        schema = await s.calls.call(
            Step.SMOKE_TEST, CallKind.READ, lambda crid: s.graph.get_job_schema(s.sp, job_id, crid)
        )
        rule = pick_rule(schema.value.schema, spec.object_type_name)
        if rule is None:
            raise SmokeTestFailed(
                f"the job's schema has no synchronization rule for {spec.object_type_name}",
                graph_status=schema.status,
                graph_request_id=schema.request_id,
            )
        rec.smoke_rule_id = rule
        await s.deps.store.save(rec)
    rule_id = rec.smoke_rule_id
    subject = {"objectId": spec.subject_id, "objectTypeName": spec.object_type_name}
    limiter = limiter_for(s)

    async def send(crid: str) -> GraphResponse[OnDemandResult]:
        wait = await limiter.acquire()
        if wait > 0:
            raise _SlotWait(wait)
        return await s.graph.provision_on_demand(s.sp, job_id, rule_id, subject, crid)

    while True:
        try:
            resp = await s.calls.call(Step.SMOKE_TEST, CallKind.WRITE, send)
            break
        except _SlotWait as w:
            await s.calls.wait(w.seconds, "provisionOnDemand: 5 calls per 10 s", pacing=True)
    result = resp.value
    rec.smoke_test_result = SmokeTestResult(
        subject_id=spec.subject_id,
        object_type_name=spec.object_type_name,
        rule_id=rule_id,
        result=result.result,
        action=result.action,
        succeeded=result.succeeded,
        steps=[
            SmokeTestStep(name=p.name, type=p.type, status=p.status, description=p.description)
            for p in result.steps
        ],
        reason=None if result.succeeded else result.reason(),
    )
    summary = ", ".join(f"{p.name} {p.status}" for p in result.steps) or "no steps"
    what = f"{spec.object_type_name} {spec.subject_id} on rule {rule_id}: {summary}"
    if not result.succeeded:
        raise SmokeTestFailed(
            f"provisionOnDemand of {what}: {result.reason()}",
            graph_status=resp.status,
            graph_request_id=resp.request_id,
            details={"subjectId": spec.subject_id, "ruleId": rule_id, "result": result.result},
        )
    return StepResult(response=resp, message=f"provisioned on demand {what}")
