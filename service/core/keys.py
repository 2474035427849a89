"""Every Redis key the service uses, built in one place (as arq keeps its prefixes in one module).

``{p}`` is the queue name, so two deployments can share one Redis; arq's own keys (the queue
sorted set ``{p}``, ``arq:job:{id}``, ``arq:in-progress:{id}``) keep arq's names::

    {p}:req:{id}                 a record, JSON                    (expires after record_ttl_s)
    {p}:creds:{id}               its credentials, one Fernet token (deleted once saved to Graph)
    {p}:cancel:{id}              set by the API; the worker stops at the next step boundary
    {p}:inflight:{sp}:{t}        id of the queued/running request for a (principal, template)
    {p}:job-claim:{sp}:{t}       lease on a RESOLVED (principal, template): owner token, PX TTL
    {p}:job-create:{sp}:{t}      a create POST not yet listed (JSON: sentAt, jobId, requestId)
    {p}:worker-permissions:{w}   a worker's verdict on its token's Graph roles (JSON)
    {p}:idem:{caller}:{sha256}   an Idempotency-Key entry
    {p}:index, :state:{s}, :sp:{sp}   sorted sets (score = creation ms) for listing
    {p}:health-check:{worker}    arq's health-check key of a worker
    {p}:cooldown:{tenant}        the tenant's throttle cool-down (its TTL is the cool-down)
    {p}:throttle:{tenant}        the tenant's shared token bucket (hash)
    {p}:intake:{caller}          a caller's intake rate-limit counter
    {p}:ui-session:{sha256}      a status-page session
"""

from __future__ import annotations

from dataclasses import dataclass

from arq.constants import in_progress_key_prefix, job_key_prefix


def job_key(request_id: str) -> str:
    """The arq key holding the queued job of a request."""
    return job_key_prefix + request_id


def in_progress_key(request_id: str) -> str:
    """The arq key a worker holds while it runs a request's job."""
    return in_progress_key_prefix + request_id


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one deployment, under its queue name."""

    prefix: str

    @property
    def queue(self) -> str:
        """arq's queue sorted set."""
        return self.prefix

    def record(self, request_id: str) -> str:
        return f"{self.prefix}:req:{request_id}"

    def credentials(self, request_id: str) -> str:
        return f"{self.prefix}:creds:{request_id}"

    def cancel(self, request_id: str) -> str:
        return f"{self.prefix}:cancel:{request_id}"

    def inflight(self, service_principal_id: str, template: str) -> str:
        return f"{self.prefix}:inflight:{service_principal_id}:{template}"

    def job_claim(self, service_principal_id: str, template: str) -> str:
        """The create lease on a resolved (principal, template): held from the job list to
        the recorded job id (workers/workflow/claim.py)."""
        return f"{self.prefix}:job-claim:{service_principal_id}:{template}"

    def job_create(self, service_principal_id: str, template: str) -> str:
        """A create POST for a (principal, template) that Graph's job list may not show yet."""
        return f"{self.prefix}:job-create:{service_principal_id}:{template}"

    def worker_permissions(self, worker_name: str) -> str:
        """A worker's verdict on its access token's roles, read by ``worker --check``."""
        return f"{self.prefix}:worker-permissions:{worker_name}"

    def idempotency(self, caller: str, key_digest: str) -> str:
        return f"{self.prefix}:idem:{caller}:{key_digest}"

    @property
    def index(self) -> str:
        return f"{self.prefix}:index"

    def by_state(self, state_value: str) -> str:
        return f"{self.prefix}:state:{state_value}"

    def by_principal(self, service_principal_id: str) -> str:
        return f"{self.prefix}:sp:{service_principal_id}"

    def health_check(self, worker_name: str) -> str:
        """A worker's arq health-check key (``*``: a pattern for all), fresh while it lives."""
        return f"{self.prefix}:health-check:{worker_name}"

    def cooldown(self, tenant: str) -> str:
        """A tenant's throttle cool-down key (``*``: a pattern for all)."""
        return f"{self.prefix}:cooldown:{tenant}"

    def tenant_bucket(self, tenant: str) -> str:
        return f"{self.prefix}:throttle:{tenant}"

    def intake_limit(self, caller: str) -> str:
        return f"{self.prefix}:intake:{caller}"

    def ui_session(self, session_digest: str) -> str:
        return f"{self.prefix}:ui-session:{session_digest}"
