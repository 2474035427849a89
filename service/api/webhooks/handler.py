"""``POST /v1/webhooks/{source}``: provisioning requests from ticketing systems.

Order of checks, each answering before anything is stored or enqueued: unknown source -> 404;
not authentic (signature, timestamp, bearer caller; see :mod:`service.api.webhooks.sources`) -> 401;
body not JSON -> 400; the mapped request invalid -> 422; the source's caller
(``webhook:{source}``) not allowed by the access policy -> 403; rate or queue limit -> 429/503.
Then the delivery id (``X-Atlassian-Webhook-Identifier``, ``webhook-id`` or the mapping's
``deliveryId``) goes through the Idempotency-Key machinery of :class:`~service.core.store.Store`,
scoped
to the source: a redelivery answers the first response (same request id) and enqueues nothing.
The request itself takes the same path as the API's (``Store.accept``).

Secrets, signatures and tokens are never logged or echoed; a rejection logs the source and why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import structlog
from aiohttp import web
from pydantic import ValidationError

from service.api.auth.keys import CALLER, Authenticator, authenticate
from service.api.auth.policy import Permission
from service.api.intake import (
    authorize_body,
    enforce_intake_limits,
    submit,
)
from service.api.problems import FieldError, Problem, validation_problem
from service.api.state import AUTHENTICATORS, POLICY, SETTINGS, STORE, WEBHOOKS
from service.api.webhooks.sources import (
    MAX_ID_CHARS,
    Rejected,
    WebhookSource,
    map_payload,
    verify_hub_signature,
    verify_standard,
)
from service.core.models import ProvisionRequest

__all__ = ["WEBHOOK_PATH", "routes"]

WEBHOOK_PATH = "/v1/webhooks/{source}"
JIRA_DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


def _unauthorized() -> Problem:
    return Problem(
        401,
        "Unauthorized",
        "The webhook delivery is not signed with a configured secret, or its timestamp is stale.",
        slug="webhook-unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="provisioner"'},
    )


async def _authenticate(
    request: web.Request,
    source: WebhookSource,
    body: bytes,
    authenticators: Sequence[Authenticator],
) -> str | None:
    """Check the delivery; return its delivery id (None when the source gives none)."""
    tolerance = request.app[SETTINGS].webhook_tolerance_s
    if source.kind == "jira":
        header = request.headers.get("X-Hub-Signature") or request.headers.get(
            "X-Hub-Signature-256"
        )
        verify_hub_signature(source.secrets, body, header)
        delivery = request.headers.get(JIRA_DELIVERY_HEADER, "")
        return delivery[:MAX_ID_CHARS] if delivery.isprintable() and delivery else None
    if source.kind == "standard":
        return verify_standard(source.secrets, request.headers, body, tolerance_s=tolerance)
    # servicenow: a signature when one is sent, else a bearer token of an allowed caller.
    if "webhook-signature" in request.headers and source.secrets:
        return verify_standard(source.secrets, request.headers, body, tolerance_s=tolerance)
    if source.bearer_callers:
        caller = await authenticate(authenticators, request)
        if caller is not None and caller in source.bearer_callers:
            return None
        raise Rejected("bearer token missing, invalid or not allowed for this source")
    raise Rejected("missing signature")


@routes.post(WEBHOOK_PATH)
async def receive_webhook(request: web.Request) -> web.Response:
    """Turn a ticketing system's delivery into a provisioning request (202 with its id)."""
    name = request.match_info["source"]
    source = request.app[WEBHOOKS].sources.get(name)
    if source is None:
        raise Problem(404, "Not Found", "No webhook source with this name is configured.")
    body = await request.read()
    try:
        delivery = await _authenticate(request, source, body, request.app[AUTHENTICATORS])
    except Rejected as e:
        log.info("webhook_rejected", source=name, reason=e.reason)
        raise _unauthorized() from None
    caller = source.caller
    request[CALLER] = caller
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "Malformed JSON", "The request body is not valid JSON.") from None
    try:
        fields, mapped_delivery = map_payload(
            source, payload, request.app[WEBHOOKS].credential_sets
        )
    except ValueError as e:
        raise Problem(
            422,
            "Validation error",
            "The payload does not map to a provisioning request; see errors.",
            slug="validation-error",
            errors=[FieldError(field="credentialsRef", reason=str(e))],
        ) from None
    try:
        request_body = ProvisionRequest.model_validate(fields)
    except ValidationError as e:
        raise validation_problem(
            e, "The payload does not map to a provisioning request; see errors."
        ) from None
    if request_body.credentials and request.app[STORE].cipher is None:
        raise Problem(
            422,
            "Validation error",
            "credentials cannot be accepted: no PROVISIONER_ENCRYPTION_KEY is configured.",
            slug="validation-error",
            errors=[FieldError(field="credentialsRef", reason="needs an encryption key")],
        )
    permissions = request.app[POLICY].permissions(caller, None)
    if Permission.WRITE not in permissions:
        raise Problem(403, "Forbidden", "This webhook source may not submit requests.")
    await authorize_body(request, request_body, caller)
    await enforce_intake_limits(request, caller)
    key = delivery or mapped_delivery
    response = await submit(
        request,
        request_body,
        caller,
        f"delivery:{key}" if key else None,
        source="webhook",
        ttl_s=request.app[SETTINGS].webhook_dedupe_ttl_s,
    )
    log.info("webhook_accepted", source=name, status=response.status)
    return response
