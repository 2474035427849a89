"""The ``map_attributes`` step.

``map_attributes`` reads the job's schema, applies the request's attribute mappings to it
(:func:`workers.graph.schema.apply_mappings`: only the named mappings change) and PUTs it back
whole, as the schema PUT replaces everything; when the schema already holds every requested
mapping there is no PUT. Graph's 400 to the PUT becomes ``SchemaRejected`` with its message.
"""

from __future__ import annotations

from service.core.errors import GraphError
from service.core.models import Outcome, Step
from workers.graph.schema import apply_mappings
from workers.workflow.onboarding_errors import ObjectMappingNotFound, SchemaRejected
from workers.workflow.retry import CallKind
from workers.workflow.steps import StepResult, Steps

STEP = Step.MAP_ATTRIBUTES


async def map_attributes(s: Steps) -> StepResult:
    """GET the job's schema, change the named mappings, PUT it back when anything changed."""
    rec = s.record
    if not rec.attribute_mappings:
        return StepResult(
            Outcome.SKIPPED, message="no attribute mappings in the request", silent=True
        )
    assert rec.job_id is not None
    job_id = rec.job_id
    doc = await s.calls.call(
        STEP, CallKind.READ, lambda crid: s.graph.get_job_schema(s.sp, job_id, crid)
    )
    edit = apply_mappings(doc.value, rec.attribute_mappings)
    if edit.missing:
        available = doc.value.object_mapping_names()
        raise ObjectMappingNotFound(
            f"the job's schema has no object mapping {', '.join(map(repr, edit.missing))}; "
            f"available: {', '.join(map(repr, available)) or 'none'}",
            details={"missing": edit.missing, "available": available},
            graph_status=doc.status,
            graph_request_id=doc.request_id,
        )
    if not edit.changed:
        return StepResult(Outcome.SKIPPED, doc, "the schema already holds every mapping")
    try:
        put = await s.calls.call(
            STEP,
            CallKind.WRITE,
            lambda crid: s.graph.put_job_schema(s.sp, job_id, edit.raw, crid),
        )
    except GraphError as e:
        if e.status == 400:
            raise SchemaRejected(
                f"Graph refused the schema: {e.code}" + (f": {e.message}" if e.message else ""),
                graph_status=e.status,
                graph_request_id=e.request_id,
            ) from e
        raise
    return StepResult(response=put, message="; ".join(edit.changed))
