"""From a webhook payload to a provisioning request body, and the checks only webhooks need.

:func:`map_payload` follows the source's ``mapping`` (JSON pointers or dotted paths);
:func:`delivery_errors` then checks, on the validated request, what the API's own validation
cannot know: the ``credentialsRef`` names a credential set bound to this service principal and
template, and the ``externalReference`` has the source's ticket id format (the write-back puts
it in a URL). Every problem names the request field, never the submitted value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.api.problems import FieldError
from service.api.webhooks.sources import MAX_ID_CHARS, CredentialSet, WebhookSource, WebhookSources
from service.core.request import ProvisionRequest

__all__ = ["MISSING", "Mapped", "delivery_errors", "lookup", "map_payload"]

MISSING: Any = object()


@dataclass(frozen=True)
class Mapped:
    """What a payload maps to: the request body, the mapping's delivery id, the credential set."""

    body: dict[str, Any]
    delivery: str | None = None
    credential_set: CredentialSet | None = None


def lookup(payload: Any, path: str) -> Any:
    """The value at a JSON pointer (``/a/0/b``) or dotted path (``a.0.b``), else MISSING."""
    if path.startswith("/"):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    else:
        parts = path.split(".")
    node = payload
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def map_payload(source: WebhookSource, payload: Any, config: WebhookSources) -> Mapped:
    """The request the payload stands for. Raises ValueError (the reason for the
    ``credentialsRef`` field) when the payload names a credential set that does not exist."""
    body: dict[str, Any] = {}
    mapping = source.mapping
    # ``action`` (issue 12): a ticket can ask for any action; intake checks the value.
    for name in ("servicePrincipalId", "templateId", "externalReference", "callbackUrl", "action"):
        path = getattr(mapping, name)
        value = MISSING if path is None else lookup(payload, path)
        if value is MISSING or value is None or value == "":
            value = source.defaults.get(name, MISSING)
        if value is MISSING:
            continue
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        body[name] = str(value) if numeric else value
    chosen: CredentialSet | None = None
    if mapping.credentialsRef is not None:
        ref = lookup(payload, mapping.credentialsRef)
        if ref not in (MISSING, None, ""):
            if not isinstance(ref, str) or ref not in config.credential_sets:
                raise ValueError("names no configured credential set")
            chosen = config.credential_sets[ref]
            body["credentials"] = [{"key": k, "value": v} for k, v in chosen.values]
    delivery: str | None = None
    if mapping.deliveryId is not None:
        found = lookup(payload, mapping.deliveryId)
        if isinstance(found, str | int) and str(found):
            delivery = str(found)[:MAX_ID_CHARS]
    return Mapped(body, delivery, chosen)


def delivery_errors(
    source: WebhookSource, mapped: Mapped, request: ProvisionRequest
) -> list[FieldError]:
    """What is wrong with a valid request for having come from this source (empty: nothing)."""
    errors: list[FieldError] = []
    if mapped.credential_set is not None:
        why = (
            mapped.credential_set.refusal(request.service_principal_id, request.template_id)
            if request.service_principal_id is not None
            else "is bound to existing service principals; this request names a new app"
        )
        if why is not None:
            errors.append(FieldError(field="credentialsRef", reason=why))
    reference = request.external_reference
    pattern = source.reference_pattern
    if reference is not None and pattern is not None and not pattern.fullmatch(reference):
        errors.append(
            FieldError(
                field="externalReference",
                reason=f"is not a {source.kind} ticket id of the configured format",
            )
        )
    return errors
