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

The note gives the outcome, the job id and, on failure, the error code, message and Graph
request-id. Like callbacks, the job is queued with the terminal state, retried on the same
schedule for the same window, and every attempt is listed in the record's ``callbacks``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from service.core.errors import ConfigError
from service.core.models import Record
from workers.notify.callbacks import deliver
from workers.workflow.steps import Deps


class JiraTarget(BaseModel):
    """Where and as whom to comment on Jira issues."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str
    email: str
    api_token_env: str


class ServiceNowTarget(BaseModel):
    """Where and as whom to add work notes on ServiceNow records."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    instance_url: str
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
    try:
        config = WritebackConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ConfigError(f"PROVISIONER_WRITEBACK_FILE: {str(e).splitlines()[0]}") from e
    for name in filter(None, [getattr(config.jira, "api_token_env", None),
                              getattr(config.servicenow, "password_env", None)]):  # fmt: skip
        if not os.environ.get(name):
            raise ConfigError(
                f"PROVISIONER_WRITEBACK_FILE: the variable {name} it names is not set"
            )
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


def _jira(target: JiraTarget, record: Record) -> tuple[str, str, dict[str, Any]]:
    paragraphs = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]}
        for line in note_text(record).splitlines()
    ]
    url = f"{target.base_url.rstrip('/')}/rest/api/3/issue/{record.external_reference}/comment"
    body = {"body": {"type": "doc", "version": 1, "content": paragraphs}}
    auth = _basic(target.email, target.api_token_env)
    return "POST", url, {"json": body, "headers": auth}


def _servicenow(target: ServiceNowTarget, record: Record) -> tuple[str, str, dict[str, Any]]:
    url = (
        f"{target.instance_url.rstrip('/')}/api/now/table/{target.table}/"
        f"{record.external_reference}"
    )
    auth = _basic(target.username, target.password_env)
    return "PATCH", url, {"json": {"work_notes": note_text(record)}, "headers": auth}


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
    if source == "jira" and config.jira is not None:
        method, url, options = _jira(config.jira, record)
    elif source == "servicenow" and config.servicenow is not None:
        method, url, options = _servicenow(config.servicenow, record)
    else:
        return  # no write-back configured for this source
    await deliver(ctx, record, source, method, url, **options)


def ticket_note(
    config: WritebackConfig, source: str, reference: str, text: str
) -> tuple[str, str, dict[str, Any]] | None:
    """Method, URL and options of a note with ``text`` on ticket ``reference`` of ``source``
    (the health watch's notes), or None when the source has no write-back target."""
    lines = text.splitlines()
    if source == "jira" and config.jira is not None:
        jira = config.jira
        paragraphs = [
            {"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in lines
        ]
        url = f"{jira.base_url.rstrip('/')}/rest/api/3/issue/{reference}/comment"
        body = {"body": {"type": "doc", "version": 1, "content": paragraphs}}
        return "POST", url, {"json": body, "headers": _basic(jira.email, jira.api_token_env)}
    if source == "servicenow" and config.servicenow is not None:
        now = config.servicenow
        url = f"{now.instance_url.rstrip('/')}/api/now/table/{now.table}/{reference}"
        auth = _basic(now.username, now.password_env)
        return "PATCH", url, {"json": {"work_notes": text}, "headers": auth}
    return None
