"""The onboarding steps (issue 13) against the sandbox through real arq workers: the gallery
name lookup, adopting an app made before, assignments added once and never removed, the
schema edit and Graph's refusal of it, and the fail-fast permission check."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from service.core.models import Record, State
from service.core.request import Credential
from service.core.specs import ApplicationSpec, AssignmentSpec, AttributeMappingSpec
from tests.helpers.harness import Harness, jobs_of, worker_settings
from tests.helpers.sandbox import SandboxProcess

ONBOARDING_CLIENT = ("8c4d2e6f-1a3b-4c5d-9e7f-0a1b2c3d4e5f", "sandbox-onboarding-secret-Hd7sK2pQ9w")
SERVICENOW = "6f3b2a4e-1c55-4a8e-9b1e-5d2c8f7a9e01"
SERVICENOW_USER = "18d14569-c3bd-439b-9a66-3a2aee01d14f"
MSIAM = "8b292bda-39b6-4b77-849e-887565235bb0"
CONTOSO_DIRECTORY = {"4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a05", "5f6a7b8c-9d0e-4f1a-8b2c-3d4e5f6a7b06"}
SAML_TOOLKIT = "229946b9-a9fb-45b8-9531-efa47453ac9e"
USERS = "Provision Microsoft Entra ID Users"
GROUP_A = "0a1b2c3d-0000-4000-8000-00000000000a"
USER_B = "1a1b2c3d-0000-4000-8000-00000000000b"


@pytest.fixture
def onboarding(fresh_sandbox: SandboxProcess, redis: Redis, redis_url: str) -> Harness:
    client_id, secret = ONBOARDING_CLIENT
    settings = worker_settings(
        fresh_sandbox,
        redis_url,
        client_id=client_id,
        client_secret=secret,
        instantiate_settle_s=1.0,
        app_poll_s=0.1,
        app_replication_budget_s=10.0,
    )
    return Harness(settings, redis, fresh_sandbox)


async def run(
    h: Harness,
    application: dict[str, str],
    credentials: dict[str, str] | None = None,
    **fields: Any,
) -> Record:
    record = Record(
        id=uuid.uuid4().hex,
        service_principal_id="",
        caller="onboarding-test",
        application=ApplicationSpec.model_validate(application),
        scope=fields.pop("scope", "assigned"),
        has_credentials=bool(credentials),
        **fields,
    )
    creds = [
        Credential.model_validate({"key": k, "value": v}) for k, v in (credentials or {}).items()
    ]
    accepted, created = await h.store.accept(record, creds or None)
    assert created
    await h.drain()
    return await h.get(accepted.id)


def assignment(principal: str, role: str | None = None) -> AssignmentSpec:
    body = {"principalId": principal} | ({"appRoleId": role} if role else {})
    return AssignmentSpec.model_validate(body)


def mapping(object_mapping: str, target: str, **change: Any) -> AttributeMappingSpec:
    return AttributeMappingSpec.model_validate(
        {"objectMapping": object_mapping, "target": target, **change}
    )


def gallery(h: Harness) -> dict[str, Any]:
    return dict(h.sandbox.stats()["gallery"])


async def test_gallery_name_is_looked_up_case_insensitively(onboarding: Harness) -> None:
    done = await run(onboarding, {"galleryName": "servicenow", "displayName": "SN by name"})
    assert done.state is State.SUCCEEDED, done.error
    assert done.application_template_id == SERVICENOW
    [app] = gallery(onboarding)["apps"]
    assert app["templateId"] == SERVICENOW
    assert done.service_principal_id == app["id"]


async def test_an_ambiguous_gallery_name_fails_listing_the_candidates(onboarding: Harness) -> None:
    done = await run(onboarding, {"galleryName": "Contoso Directory", "displayName": "CD"})
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "GalleryAppAmbiguous"
    candidates = done.error.details["candidates"]
    assert len(candidates) == 2
    assert {c.split("(")[1].rstrip(")") for c in candidates} == CONTOSO_DIRECTORY
    assert "applicationTemplateId" in done.error.message
    assert gallery(onboarding).get("instantiated", 0) == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # exists, but single sign-on only: listed with why it does not count
        ("Azure AD SAML Toolkit", [f"Azure AD SAML Toolkit ({SAML_TOOLKIT}, no provisioning)"]),
        # no such name: the near names (contains) are the candidates
        ("Contoso", None),
        ("No Such App", []),
    ],
)
async def test_an_unknown_gallery_name_fails_listing_the_candidates(
    onboarding: Harness, name: str, expected: list[str] | None
) -> None:
    done = await run(onboarding, {"galleryName": name, "displayName": "unknown"})
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "GalleryAppNotFound"
    candidates = done.error.details["candidates"]
    if expected is None:
        assert len(candidates) == 3  # Contoso SCIM and both Contoso Directory templates
        assert all(c.startswith("Contoso ") for c in candidates)
    else:
        assert candidates == expected
    assert (", ".join(candidates) or "none") in done.error.message.replace("; ", ", ")
    assert gallery(onboarding).get("instantiated", 0) == 0


async def test_a_second_request_adopts_adds_only_the_missing_assignment_and_removes_nothing(
    onboarding: Harness,
) -> None:
    app = {"applicationTemplateId": SERVICENOW, "displayName": "Adopted once"}
    first = await run(onboarding, app, assignments=[assignment(GROUP_A)])
    assert first.state is State.SUCCEEDED, first.error
    before = gallery(onboarding)
    sp = first.service_principal_id
    assert before["assignments"][sp] == [[GROUP_A, SERVICENOW_USER]]  # the role named User

    second = await run(
        onboarding,
        app,
        assignments=[
            assignment(GROUP_A),  # already there: not added again
            assignment(USER_B, MSIAM),
        ],
    )
    assert second.state is State.SUCCEEDED, second.error
    after = gallery(onboarding)
    assert after["instantiated"] == 1
    assert second.service_principal_id == sp
    assert after["assignments"][sp] == sorted([[GROUP_A, SERVICENOW_USER], [USER_B, MSIAM]])
    assert after["assignments_added"] == before["assignments_added"] + 1
    assert after.get("assignments_duplicate", 0) == 0  # listed first, never a blind add
    outcomes = {h.step.value: h.outcome.value for h in second.history if h.step}
    assert outcomes["instantiate_app"] == "adopted"
    assert outcomes["assign"] == "succeeded"
    assert len(second.assignments_made) == 1
    assert len(jobs_of(onboarding.sandbox.stats(), sp)) == 1

    third = await run(onboarding, app, assignments=[assignment(USER_B)])
    assert third.state is State.SUCCEEDED, third.error
    # USER_B with the default role is new; nothing the request does not name is removed
    assert gallery(onboarding)["assignments"][sp] == sorted(
        [[GROUP_A, SERVICENOW_USER], [USER_B, MSIAM], [USER_B, SERVICENOW_USER]]
    )


async def test_a_schema_graph_refuses_is_schema_rejected_with_its_message(
    onboarding: Harness,
) -> None:
    done = await run(
        onboarding,
        {"applicationTemplateId": SERVICENOW, "displayName": "Bad mapping"},
        attribute_mappings=[mapping(USERS, "shoeSize", source="mail")],
    )
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "SchemaRejected"
    assert "shoeSize" in done.error.message  # Graph's own words, quoted
    assert done.error.graph_status == 400
    assert done.error.graph_request_id
    stats = gallery(onboarding)
    assert stats.get("schema_puts", 0) == 0
    assert stats["mappings"] == {} or all(
        f"{USERS}.shoeSize" not in m for m in stats["mappings"].values()
    )


async def test_an_unknown_object_mapping_lists_the_available_ones(onboarding: Harness) -> None:
    done = await run(
        onboarding,
        {"applicationTemplateId": SERVICENOW, "displayName": "No such object"},
        attribute_mappings=[mapping("Provision Printers", "x", remove=True)],
    )
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "ObjectMappingNotFound"
    assert USERS in done.error.details["available"]
    assert gallery(onboarding).get("schema_puts", 0) == 0


async def test_a_token_that_cannot_instantiate_or_assign_fails_before_any_call(
    harness: Harness,
) -> None:
    """The default sandbox client holds Synchronization.ReadWrite.All only."""
    done = await run(
        harness,
        {"applicationTemplateId": SERVICENOW, "displayName": "Not allowed"},
        assignments=[assignment(GROUP_A)],
    )
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "GraphPermissionMissing"
    needed = done.error.details["needed"]
    assert set(needed) == {"instantiate_app", "assign"}
    assert "AppRoleAssignment.ReadWrite.All" in needed["assign"]
    assert "Application.ReadWrite.All" in needed["instantiate_app"]
    assert "AppRoleAssignment.ReadWrite.All" in done.error.message
    calls = harness.sandbox.stats()["calls"]
    assert not [route for route in calls if route.startswith(("applicationTemplates", "servic"))]
    assert gallery(harness).get("instantiated", 0) == 0


async def test_sync_all_goes_in_the_same_put_as_the_credentials(onboarding: Harness) -> None:
    done = await run(
        onboarding,
        {"applicationTemplateId": SERVICENOW, "displayName": "With credentials"},
        credentials={"BaseAddress": "https://scim.example/v2", "SecretToken": "tok-123456"},
        scope="all",
    )
    assert done.state is State.SUCCEEDED, done.error
    stats = onboarding.sandbox.stats()
    sp = done.service_principal_id
    assert stats["secrets"][sp] == 1  # one PUT
    assert stats["gallery"]["syncAll"][sp] == "true"
    assert stats["calls"]["secrets.put"] == {"204": 1}


async def test_an_instantiate_refused_with_429_leaves_no_note_to_wait_out(
    fresh_sandbox: SandboxProcess, redis: Redis, redis_url: str
) -> None:
    """Graph did not process a 429'd POST: when the retry budget runs out the request fails
    without an ``instantiateSentAt`` note or a held claim, so a retry instantiates at once
    instead of waiting out the settle time for an app that was never made."""
    client_id, secret = ONBOARDING_CLIENT
    settings = worker_settings(
        fresh_sandbox,
        redis_url,
        client_id=client_id,
        client_secret=secret,
        retry_budget_s=1.0,
        instantiate_settle_s=600.0,
    )
    h = Harness(settings, redis, fresh_sandbox)
    fresh_sandbox.patch_faults(
        {"retry_after_s": 0.1, "errors": {"applicationTemplates.instantiate": {429: 1.0}}}
    )
    app = {"applicationTemplateId": SERVICENOW, "displayName": "Throttled"}
    done = await run(h, app)
    assert done.state is State.FAILED
    assert done.error is not None
    assert done.error.code == "RetryBudgetExhausted", done.error
    assert done.instantiate_sent_at is None
    assert [k async for k in redis.scan_iter(match="*app-claim*")] == []
    assert gallery(h).get("instantiated", 0) == 0
    fresh_sandbox.patch_faults({"errors": {"applicationTemplates.instantiate": {429: 0.0}}})
    again = await run(h, app)  # settle 600 s: only the cleared note lets this finish now
    assert again.state is State.SUCCEEDED, again.error
    assert gallery(h)["instantiated"] == 1
