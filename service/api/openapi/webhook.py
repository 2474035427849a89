"""The operation of ``POST /v1/webhooks/{source}`` (its handler, in
:mod:`service.api.webhooks.handler`, carries no metadata of its own yet)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.api.openapi.meta import Body, Header, Operation

__all__ = ["WEBHOOK_OPERATION", "WebhookPath"]

#: A webhook source's name in ``PROVISIONER_WEBHOOKS_FILE``.
SOURCE_PATTERN = "^[a-z0-9][a-z0-9_-]{0,63}$"


class WebhookPath(BaseModel):
    """The path of ``/v1/webhooks/{source}``."""

    source: str = Field(
        pattern=SOURCE_PATTERN,
        description="A configured webhook source (PROVISIONER_WEBHOOKS_FILE).",
    )


_DESCRIPTION = (
    "A ticketing system's delivery, authenticated by the source's kind instead of the bearer "
    "scheme: `jira` by `X-Hub-Signature: sha256=<hex HMAC of the body>`, `standard` by the "
    "Standard Webhooks headers (5-minute tolerance), `servicenow` by those headers or a bearer "
    "token of an allowed caller. The payload is mapped to a provisioning request by the source's "
    "configured mapping (see docs/webhooks.md). 202 with the new request; a redelivery (same "
    "delivery id) answers the first response and enqueues nothing; 200 while the same request "
    "for the same app is in flight, 409 while a different one is. Unknown source: 404; bad "
    "signature or stale timestamp: 401."
)

_RECORD_AT = Body("Record", location=True)

WEBHOOK_OPERATION = Operation(
    "receiveWebhook",
    "Accept a provisioning request from a ticketing system",
    ok={202: _RECORD_AT, 200: _RECORD_AT},
    problems=(400, 401, 403, 404, 409, 413, 422, 429, 503),
    description=_DESCRIPTION,
    raw_body=True,
    path=WebhookPath,
    headers=(
        Header("X-Hub-Signature", "`sha256=<hex>` (jira)."),
        Header(
            "X-Atlassian-Webhook-Identifier",
            "Ignored: not signed. A jira delivery must carry a fresh body `timestamp` "
            "(epoch ms) and is deduplicated by the SHA-256 of its signed body.",
        ),
        Header("webhook-id", "Delivery id (standard, servicenow)."),
        Header("webhook-timestamp", "Unix seconds (standard, servicenow)."),
        Header("webhook-signature", "`v1,<base64>` entries (standard, servicenow)."),
    ),
    public=True,
)
