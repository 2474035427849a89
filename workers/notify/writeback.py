"""Ticket write-back: when a request that came from a ticketing webhook ends, say so on the ticket.

Configured per webhook source in the YAML file named by ``PROVISIONER_WRITEBACK_FILE``::

    jira:                                   # requests from POST /v1/webhooks/jira
      base_url: https://acme.atlassian.net
      email: provisioning-bot@acme.com
      api_token_env: JIRA_API_TOKEN         # the token itself stays in the environment
    servicenow:                             # requests from POST /v1/webhooks/servicenow
      instance_url: https://acme.service-now.com
      table: sc_req_item
      username: provisioning
      password_env: SERVICENOW_PASSWORD

- Jira (REST API v3): ``POST {base_url}/rest/api/3/issue/{externalReference}/comment`` with an
  Atlassian Document Format body, basic auth ``email:api_token``.
- ServiceNow (Table API): ``PATCH {instance_url}/api/now/table/{table}/{externalReference}``
  with ``{"work_notes": "..."}``, basic auth; ``externalReference`` is the record's sys_id.

Both addresses must be ``https://`` (anything else stops the worker at start-up: the basic
auth credentials would go in the clear). The reference was checked against the ticket id
format at intake (service/api/webhooks/mapping.py); here, whatever a record holds, every path
segment is percent-encoded (``quote(x, safe="")``: ``/``, ``?``, ``#`` cannot leave the
segment) and a reference that is empty, ``.`` or ``..`` is not written back at all, so no
record can steer the integration account to another resource.

The note gives the outcome, the job id and, on failure, the error code, message and Graph
request-id. Like callbacks, the job is queued with the terminal state, retried on the same
schedule for the same window, and every attempt is listed in the record's ``callbacks``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import aiohttp
import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict
from yarl import URL

from service.core.errors import ConfigError
from service.core.fields import utcnow
from service.core.files import configured, load_model
from service.core.models import CallbackAttempt, Record
from workers.notify.callbacks import deliver
from workers.workflow.steps import Deps

log = structlog.get_logger("workers.notify.writeback")

VARIABLE = "PROVISIONER_WRITEBACK_FILE"


def _https(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must be a plain https:// base URL (no credentials, query or fragment)")
    return value


def segment(value: str) -> str:
    """One URL path segment, percent-encoded; ValueError for ``.``/``..``/empty."""
    if value in ("", ".", ".."):
        raise ValueError("is not a usable ticket reference")
    return quote(value, safe="")


#: A ticket system's address: https:// only (basic auth goes with every call).
HttpsUrl = Annotated[str, AfterValidator(_https)]


class JiraTarget(BaseModel):
    """Where and as whom to comment on Jira issues."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: HttpsUrl
    email: str
    api_token_env: str


class ServiceNowTarget(BaseModel):
    """Where and as whom to add work notes on ServiceNow records."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    instance_url: HttpsUrl
    table: str = "sc_req_item"
    username: str
    password_env: str


class WritebackConfig(BaseModel):
    """The write-back targets, keyed by webhook source."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    jira: JiraTarget | None = None
    servicenow: ServiceNowTarget | None = None


def load_writeback(path: Path | None) -> WritebackConfig:
    """Read and check the file; every referenced secret variable must be set."""
    if path is None:
        return WritebackConfig()
    config = configured(VARIABLE, lambda: load_model(WritebackConfig, path))
    for name in filter(None, [getattr(config.jira, "api_token_env", None),
                              getattr(config.servicenow, "password_env", None)]):  # fmt: skip
        if not os.environ.get(name):
            raise ConfigError(f"{VARIABLE}: the variable {name} it names is not set")
    return config


def note_text(record: Record) -> str:
    """The outcome in a few lines, for a human reading the ticket."""
    lines = [f"Entra provisioning request {record.id}: {record.state.value}."]
    if record.template_id:
        lines.append(f"Template: {record.template_id}. Job: {record.job_id or 'none'}.")
    if record.error is not None:
        lines.append(f"Error {record.error.code}: {record.error.message}")
        if record.error.graph_request_id:
            lines.append(f"Graph request-id: {record.error.graph_request_id}")
    return "\n".join(lines)


def _url(base: str, encoded_path: str) -> URL:
    """The base URL (normalised) followed by a path whose segments are already encoded, sent
    exactly so (``encoded=True``: no re-quoting turns ``%3D`` back into ``=``)."""
    return URL(str(URL(base.rstrip("/"))) + encoded_path, encoded=True)


Target = tuple[str, URL, dict[str, Any]]  # method, URL, request options


def _jira(target: JiraTarget, reference: str, text: str) -> Target:
    paragraphs = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]}
        for line in text.splitlines()
    ]
    url = _url(target.base_url, f"/rest/api/3/issue/{segment(reference)}/comment")
    body = {"body": {"type": "doc", "version": 1, "content": paragraphs}}
    auth = _basic(target.email, target.api_token_env)
    return "POST", url, {"json": body, "headers": auth}


def _servicenow(target: ServiceNowTarget, reference: str, text: str) -> Target:
    path = f"/api/now/table/{segment(target.table)}/{segment(reference)}"
    auth = _basic(target.username, target.password_env)
    return "PATCH", _url(target.instance_url, path), {"json": {"work_notes": text}, "headers": auth}


def ticket_note(config: WritebackConfig, source: str, reference: str, text: str) -> Target | None:
    """Method, URL and options of a note with ``text`` on ticket ``reference`` of ``source``,
    or None when the source has no write-back target. Every path segment is percent-encoded
    (:func:`segment` raises ValueError for a reference that cannot be one segment)."""
    if source == "jira" and config.jira is not None:
        return _jira(config.jira, reference, text)
    if source == "servicenow" and config.servicenow is not None:
        return _servicenow(config.servicenow, reference, text)
    return None


def _basic(user: str, secret_env: str) -> dict[str, str]:
    secret = os.environ.get(secret_env, "")
    return {"Authorization": aiohttp.encode_basic_auth(user, secret), "Accept": "application/json"}


async def write_back(ctx: dict[str, Any], request_id: str) -> None:
    """arq job: note the ended request on its ticket, when its source has a target."""
    deps: Deps = ctx["deps"]
    config: WritebackConfig = ctx["writeback"]
    record = await deps.store.get(request_id)
    if record is None or not record.state.terminal or not record.external_reference:
        return
    source = record.caller.removeprefix("webhook:")
    try:
        target = ticket_note(config, source, record.external_reference, note_text(record))
    except ValueError as e:
        reason = f"not sent: externalReference {e}"
        record.callbacks.append(
            CallbackAttempt(at=utcnow(), attempt=0, target=source, skipped=True, error=reason)
        )
        log.warning("writeback_skipped", provisioning_request_id=record.id, reason=reason)
        await deps.store.save(record, notify=False)
        return
    if target is None:
        return  # no write-back configured for this source
    method, url, options = target
    notification = f"writeback:{record.id}:{len(record.history)}"
    await deliver(ctx, record, source, method, url, notification=notification, **options)
