"""``POST /v1/webhooks/{source}``: provisioning requests from ticketing systems.

Order of checks, each answering before anything is stored or enqueued: unknown source -> 404;
not authentic (signature, bearer caller; see :mod:`service.api.webhooks.signatures`) -> 401;
body not JSON (or nested too deeply to parse) -> 400; stale (a Jira body's own ``timestamp``
outside ``PROVISIONER_WEBHOOK_TOLERANCE_S``) -> 401; a ServiceNow bearer caller without the
``write`` permission -> 403; the mapped request invalid, its ``credentialsRef`` naming a set not
bound to its principal/template, or its ``externalReference`` not the source's ticket id format
-> 422; the source's caller (``webhook:{source}``) not allowed by the access policy -> 403; rate
or queue limit -> 429/503. Then the delivery id (Jira: the SHA-256 of the signed body;
Standard Webhooks: the signed ``webhook-id``; ServiceNow by bearer: the mapping's
``deliveryId``) goes through the Idempotency-Key machinery of :class:`~service.core.store.Store`,
scoped to the source, for at least twice the tolerance: a redelivery answers the first response
(same request id) and enqueues nothing. The request itself takes the same path as the API's
(``Store.accept``).

Secrets, signatures and tokens are never logged or echoed; a rejection logs the source and why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web
from pydantic import ValidationError

from service.api.auth.keys import CALLER, TOKEN_ROLES, Authenticator, authenticate
from service.api.auth.policy import Permission
from service.api.intake import (
    authorize_body,
    enforce_intake_limits,
    submit,
)
from service.api.problems import FieldError, Problem, validation_problem
from service.api.state import AUTHENTICATORS, POLICY, SETTINGS, STORE, WEBHOOKS
from service.api.webhooks.mapping import delivery_errors, map_payload
from service.api.webhooks.signatures import (
    Rejected,
    check_jira_freshness,
    jira_delivery_key,
    verify_hub_signature,
    verify_standard,
)
from service.api.webhooks.sources import WebhookSource
from service.core.request import ProvisionRequest

__all__ = ["WEBHOOK_PATH", "routes"]

WEBHOOK_PATH = "/v1/webhooks/{source}"

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


@dataclass(frozen=True)
class Authentic:
    """A delivery that passed its source's check: its dedupe key and, for a bearer, who sent it."""

    delivery: str | None
    bearer: str | None = None


async def _authenticate(
    request: web.Request,
    source: WebhookSource,
    body: bytes,
    authenticators: Sequence[Authenticator],
) -> Authentic:
    """Check the delivery's signature (or bearer token)."""
    tolerance = request.app[SETTINGS].webhook_tolerance_s
    if source.kind == "jira":
        header = request.headers.get("X-Hub-Signature") or request.headers.get(
            "X-Hub-Signature-256"
        )
        verify_hub_signature(source.secrets, body, header)
        # Not X-Atlassian-Webhook-Identifier: the signature does not cover it.
        return Authentic(jira_delivery_key(body))
    if source.kind == "standard":
        return Authentic(
            verify_standard(source.secrets, request.headers, body, tolerance_s=tolerance)
        )
    # servicenow: a signature when one is sent, else a bearer token of an allowed caller.
    if "webhook-signature" in request.headers and source.secrets:
        return Authentic(
            verify_standard(source.secrets, request.headers, body, tolerance_s=tolerance)
        )
    if source.bearer_callers:
        caller = await authenticate(authenticators, request)
        if caller is not None and caller in source.bearer_callers:
            return Authentic(None, bearer=caller)
        raise Rejected("bearer token missing, invalid or not allowed for this source")
    raise Rejected("missing signature")


def _bearer_may_write(request: web.Request, bearer: str) -> None:
    """A bearer token submits work: its caller needs ``write``, as on the API."""
    if Permission.WRITE not in request.app[POLICY].permissions(bearer, request.get(TOKEN_ROLES)):
        log.info(
            "webhook_rejected", source=request.match_info["source"], reason="bearer lacks write"
        )
        raise Problem(403, "Forbidden", "This bearer token's caller lacks the 'write' permission.")


def _invalid(errors: list[FieldError], detail: str | None = None) -> Problem:
    return Problem(
        422,
        "Validation error",
        detail or "The payload does not map to a provisioning request; see errors.",
        slug="validation-error",
        errors=errors,
    )


def _parse(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nested deeper than the parser goes; malformed for our purposes.
        raise Problem(400, "Malformed JSON", "The request body is not valid JSON.") from None


def _request_of(
    request: web.Request, source: WebhookSource, payload: object
) -> tuple[ProvisionRequest, str | None]:
    """The validated request a payload maps to and the mapping's delivery id (422 otherwise)."""
    try:
        mapped = map_payload(source, payload, request.app[WEBHOOKS])
    except ValueError as e:
        raise _invalid([FieldError(field="credentialsRef", reason=str(e))]) from None
    try:
        request_body = ProvisionRequest.model_validate(mapped.body)
    except (ValidationError, RecursionError) as e:
        if isinstance(e, RecursionError):
            raise _invalid([FieldError(field="body", reason="is nested too deeply")]) from None
        raise validation_problem(
            e, "The payload does not map to a provisioning request; see errors."
        ) from None
    errors = delivery_errors(source, mapped, request_body)
    if errors:
        raise _invalid(errors)
    if request_body.credentials and request.app[STORE].cipher is None:
        raise _invalid(
            [FieldError(field="credentialsRef", reason="needs an encryption key")],
            "credentials cannot be accepted: no PROVISIONER_ENCRYPTION_KEY is configured.",
        )
    return request_body, mapped.delivery


@routes.post(WEBHOOK_PATH)
async def receive_webhook(request: web.Request) -> web.Response:
    """Turn a ticketing system's delivery into a provisioning request (202 with its id)."""
    name = request.match_info["source"]
    source = request.app[WEBHOOKS].sources.get(name)
    if source is None:
        raise Problem(404, "Not Found", "No webhook source with this name is configured.")
    settings = request.app[SETTINGS]
    body = await request.read()
    try:
        authentic = await _authenticate(request, source, body, request.app[AUTHENTICATORS])
        payload = _parse(body)
        if source.kind == "jira":
            check_jira_freshness(payload, tolerance_s=settings.webhook_tolerance_s)
    except Rejected as e:
        log.info("webhook_rejected", source=name, reason=e.reason)
        raise _unauthorized() from None
    if authentic.bearer is not None:
        _bearer_may_write(request, authentic.bearer)
    caller = source.caller
    request[CALLER] = caller
    request_body, mapped_delivery = _request_of(request, source, payload)
    permissions = request.app[POLICY].permissions(caller, None)
    if Permission.WRITE not in permissions:
        raise Problem(403, "Forbidden", "This webhook source may not submit requests.")
    await authorize_body(request, request_body, caller)
    await enforce_intake_limits(request, caller)
    key = authentic.delivery or mapped_delivery
    response = await submit(
        request,
        request_body,
        caller,
        f"delivery:{key}" if key else None,
        source="webhook",
        # A delivery is remembered for longer than it stays fresh, so no replay gets through.
        ttl_s=max(settings.webhook_dedupe_ttl_s, 2 * settings.webhook_tolerance_s),
    )
    log.info("webhook_accepted", source=name, status=response.status)
    return response
