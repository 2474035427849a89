"""The onboarding steps (issue 13): ``instantiate_app``, ``assign`` and ``map_attributes``.

They run in the same table as the steps of :mod:`workers.workflow.steps` (see
:func:`onboarding_table`) and follow the same rule: check Graph before changing anything, so
running a step twice changes nothing the second time. ``instantiate_app`` is here; the other
two are in :mod:`workers.workflow.assign` and :mod:`workers.workflow.mapping`. The rules are
in docs/workflow.md, "Gallery apps".

Instantiate has no idempotency key: a lost answer, a 5xx or a crash after the POST must never
make a second application. So the step (1) holds a claim on (template, display name) in Redis
so two requests for one app never both POST, (2) lists the template's principals and adopts
one with the same display name, (3) notes ``instantiate_sent_at`` on the record *before* the
POST, and after an unclear outcome lists again until the note is ``instantiate_settle_s`` old,
and (4) waits out the new principal's replication (404 / 401 on it) on its own budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from service.core.errors import GraphError, RetryBudgetExhausted
from service.core.fields import utcnow
from service.core.models import Outcome, Step
from service.core.specs import ApplicationSpec
from workers.graph.apps import (
    ApplicationServicePrincipal,
    ApplicationTemplate,
    ServicePrincipal,
    odata_string,
)
from workers.graph.permissions import refused
from workers.graph.response import GraphResponse
from workers.workflow.assign import assign
from workers.workflow.calls import Ambiguous, CancelRequested, Defer
from workers.workflow.mapping import map_attributes
from workers.workflow.onboarding_errors import (
    AppNotReplicated,
    GalleryAppAmbiguous,
    GalleryAppNotFound,
)
from workers.workflow.retry import CallKind
from workers.workflow.steps import StepResult, Steps

STEP = Step.INSTANTIATE_APP


def onboarding_table(steps: Steps) -> dict[Step, Callable[[], Awaitable[StepResult]]]:
    """The onboarding steps' coroutines, by step, sharing ``steps``' record and call runner."""
    return {
        Step.INSTANTIATE_APP: lambda: instantiate_app(steps),
        Step.ASSIGN: lambda: assign(steps),
        Step.MAP_ATTRIBUTES: lambda: map_attributes(steps),
    }


async def instantiate_app(s: Steps) -> StepResult:
    """Adopt the gallery app's principal, or instantiate it once; then wait until it is seen."""
    rec, app = s.record, s.record.application
    if app is None:
        return StepResult(
            Outcome.SKIPPED, message="the request names a service principal", silent=True
        )
    template_id = rec.application_template_id or app.application_template_id
    if template_id is None:
        template_id = await _template_by_name(s, app)
        rec.application_template_id = template_id
        await s.deps.store.save(rec)
    if rec.service_principal_id:  # known from an earlier run: only replication is left
        seen = await _replicated(s)
        return StepResult(Outcome.SUCCEEDED, seen, f"principal {rec.service_principal_id}")
    settings, store = s.deps.settings, s.deps.store
    settle = timedelta(seconds=settings.instantiate_settle_s)
    claim_ttl = int(settings.instantiate_settle_s + settings.app_replication_budget_s + 300)
    while True:
        existing, listed = await _find(s, template_id, app.display_name)
        if existing is not None:
            await _record_principal(s, str(existing.id))
            await store.release_app(template_id, app.display_name, rec.id)
            await _replicated(s)
            return StepResult(Outcome.ADOPTED, listed, f"adopted principal {existing.id}")
        holder = await store.claim_app(template_id, app.display_name, rec.id, claim_ttl)
        if holder is not None:
            await s.calls.wait(settings.app_poll_s, f"request {holder} is creating this app")
            continue
        left = _settle_left(rec.instantiate_sent_at, settle)
        if left > 0:
            # An earlier POST's outcome was never seen: give the list time to show its app.
            await s.calls.wait(min(settings.app_poll_s, max(0.1, left)), "earlier app not listed")
            continue
        created = await _post(s, template_id, app.display_name)
        if created is None:
            continue  # list again, under the settle rule above
        sp_id = created.value.service_principal.id
        if not sp_id:
            continue  # an answer without the principal: list again rather than guess
        await _record_principal(s, sp_id)
        await store.release_app(template_id, app.display_name, rec.id)
        await _replicated(s)
        return StepResult(response=created, message=f"instantiated principal {sp_id}")


async def _post(
    s: Steps, template_id: str, display_name: str
) -> GraphResponse[ApplicationServicePrincipal] | None:
    """POST the instantiation, its time remembered first; None when its outcome is unclear."""
    rec, store = s.record, s.deps.store

    async def post(crid: str) -> GraphResponse[ApplicationServicePrincipal]:
        # Noted when the POST is about to go out, after the throttle gave its slot: a run
        # stopped before that (a long throttle wait deferred, a cancel) leaves no note that
        # would make the next run wait out the settle time for a POST never sent.
        rec.instantiate_sent_at = utcnow()
        await store.save(rec)  # before the POST: a crash after it is remembered
        return await s.graph.instantiate(template_id, display_name, crid)

    try:
        return await s.calls.call(STEP, CallKind.CREATE, post)
    except Ambiguous:
        return None
    except GraphError as e:
        rec.instantiate_sent_at = None  # a clear refusal: nothing was made
        await store.release_app(template_id, display_name, rec.id)
        raise _refused(e, template_id) from e
    except (RetryBudgetExhausted, Defer, CancelRequested):
        # Refused with 429 (not processed) or never sent (throttle wait): nothing was made.
        rec.instantiate_sent_at = None
        await store.release_app(template_id, display_name, rec.id)
        raise


def _settle_left(sent: datetime | None, settle: timedelta) -> float:
    """Seconds until an earlier POST (sent at ``sent``) has had ``settle`` to show; 0 if none."""
    if sent is None:
        return 0.0
    return (sent + settle - utcnow()).total_seconds()


async def _record_principal(s: Steps, sp_id: str) -> None:
    rec = s.record
    rec.service_principal_id = sp_id
    rec.instantiate_sent_at = None
    rec.instantiated_at = rec.instantiated_at or utcnow()
    await s.deps.store.save(rec)  # from now on the request is listed under its principal


async def _find(
    s: Steps, template_id: str, display_name: str
) -> tuple[ServicePrincipal | None, GraphResponse[list[ServicePrincipal]]]:
    """The principal made from this template with this display name, if any (the oldest
    when an earlier tool left several)."""
    listed = await s.calls.call(
        STEP, CallKind.LOOKUP, lambda crid: s.graph.find_service_principals(template_id, crid)
    )
    same = [
        p
        for p in listed.value
        if p.id
        and p.display_name == display_name
        and (p.application_template_id or template_id).lower() == template_id.lower()
    ]
    same.sort(key=lambda p: (p.created_date_time is None, p.created_date_time, str(p.id)))
    return (same[0] if same else None), listed


async def _replicated(s: Steps) -> GraphResponse[ServicePrincipal]:
    """Poll ``GET /servicePrincipals/{id}`` until it answers, within the replication budget."""
    rec = s.record
    sp_id = rec.service_principal_id
    settings = s.deps.settings
    began = rec.instantiated_at or utcnow()
    deadline = began + timedelta(seconds=settings.app_replication_budget_s)
    while True:
        try:
            return await s.calls.call(
                STEP, CallKind.APP, lambda crid: s.graph.get_service_principal(sp_id, crid)
            )
        except GraphError as e:
            if e.status not in (404, 401) or (e.status == 401 and e.code != "UnknownError"):
                raise
            if utcnow() >= deadline:
                raise AppNotReplicated(
                    f"the new principal {sp_id} still answers {e.describe()} "
                    f"{settings.app_replication_budget_s:g}s after it was made",
                    graph_status=e.status,
                    graph_request_id=e.request_id,
                ) from e
            await s.calls.wait(settings.app_poll_s, f"new principal not replicated ({e.status})")


async def _template_by_name(s: Steps, app: ApplicationSpec) -> str:
    """The one provisionable gallery template named ``galleryName``, or a failure listing
    the candidates."""
    name = app.gallery_name or ""
    resp = await _templates(s, f"displayName eq {odata_string(name)}")
    named = [t for t in resp.value if t.id and (t.display_name or "").lower() == name.lower()]
    usable = [t for t in named if t.provisionable]
    if len(usable) == 1:
        return str(usable[0].id)
    if len(usable) > 1:
        listed = [_label(t) for t in usable]
        raise GalleryAppAmbiguous(
            f"several gallery apps are named {name!r}: {'; '.join(listed)}; "
            "pass application.applicationTemplateId to choose one",
            details={"candidates": listed},
            graph_status=resp.status,
            graph_request_id=resp.request_id,
        )
    candidates = named
    if not candidates:
        near = await _templates(s, f"contains(displayName, {odata_string(name)})")
        candidates = [t for t in near.value if t.id][:10]
    listed = [_label(t) for t in candidates]
    why = "supports provisioning" if named else "exists"
    raise GalleryAppNotFound(
        f"no gallery app named {name!r} {why}; candidates: {'; '.join(listed) or 'none'}",
        details={"candidates": listed},
        graph_status=resp.status,
        graph_request_id=resp.request_id,
    )


async def _templates(s: Steps, odata_filter: str) -> GraphResponse[list[ApplicationTemplate]]:
    return await s.calls.call(
        STEP,
        CallKind.LOOKUP,
        lambda crid: s.graph.find_application_templates(odata_filter, crid),
    )


def _label(t: ApplicationTemplate) -> str:
    sync = "" if t.provisionable else ", no provisioning"
    return f"{t.display_name} ({t.id}{sync})"


def _refused(e: GraphError, template_id: str) -> Exception:
    if e.status == 403:
        return refused(STEP, e, "instantiate the gallery app")
    if e.status == 404:
        return GalleryAppNotFound(
            f"Graph knows no gallery app template {template_id}: {e.code}: {e.message}",
            graph_status=e.status,
            graph_request_id=e.request_id,
        )
    return e
