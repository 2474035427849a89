"""Every Redis key the service uses, built in one place (as arq keeps its prefixes in one module).

``{p}`` is the queue name, so two deployments can share one Redis; arq's own keys (the queue
sorted set ``{p}``, ``arq:job:{id}``, ``arq:in-progress:{id}``) keep arq's names::

    {p}:req:{id}                 a record, JSON                    (expires after record_ttl_s)
    {p}:creds:{id}               its credentials, one Fernet token (deleted once saved to Graph)
    {p}:cancel:{id}              set by the API; the worker stops at the next step boundary
    {p}:inflight:{sp}:{t}        id of the queued/running request for a (principal, template)
    {p}:inflight:app:{a}:{sha}   the same for a request naming a gallery app (template or gallery
                                 name, sha256 of its display name) instead of a principal
    {p}:app-claim:{a}:{sha}      the request instantiating (template id, display name) right now
    {p}:job-claim:{sp}:{t}       lease on a RESOLVED (principal, template): owner token, PX TTL
    {p}:job-create:{sp}:{t}      a create POST not yet listed (JSON: sentAt, jobId, requestId)
    {p}:worker-permissions:{w}   a worker's verdict on its token's Graph roles (JSON)
    {p}:idem:{caller}:{sha256}   an Idempotency-Key entry
    {p}:state:queued, :running   the in-flight records (score = creation ms): reconciler, metrics
    {p}:caller:{caller}:index    a caller's records (score = creation ms), newest-first listing;
    {p}:caller:{caller}:state:{s}, :sp:{sp}   the same, by state and by service principal
    {p}:all:index, :state:{s}, :sp:{sp}       every caller's records (operators' listing)
    {p}:expiring                 finished records by expiry ms; the reconciler trims their entries
    {p}:waiting:{sp}:{t}         ids queued behind another caller's in-flight request (a list)
    {p}:health-check:{worker}    arq's health-check key of a worker
    {p}:wake                     a pub/sub channel, not a key: the API announces a new job on it
    {p}:cooldown:{tenant}        the tenant's throttle cool-down (its TTL is the cool-down)
    {p}:throttle:{tenant}        the tenant's shared token bucket and adaptive rate (hash;
                                 the API reads its TENANT_RATE_FIELDS for /metrics)
    {p}:intake:{caller}          a caller's intake rate-limit counter
    {p}:ui-session:{sha256}      a status-page session
    {p}:callback-body:{msg id}   a callback's body, built once, sent by every retry
    {p}:callbacks-pending:{caller}  sorted set: that caller's notifications waiting for a retry
    {p}:ui-login:{address}       sign-in attempts from one client address (expires with its window)
    {p}:app:{sp}                 an application (a principal's watched jobs), JSON, no expiry
    {p}:apps, :apps:health:{h}   lex-sorted sets of principal ids: all, with a job in health h
    {p}:watch                    sorted set of "{sp}:{jobId}" scored by next check (ms)
    {p}:app-event:{id}           a health change to notify (callback, ticket), JSON, expires
    {p}:on-demand:{tenant}       sorted set: the tenant's recent provisionOnDemand calls (their ms)
"""

from __future__ import annotations

from dataclasses import dataclass

from arq.constants import in_progress_key_prefix, job_key_prefix

#: The fields of a tenant's throttle hash (``Keys.tenant_bucket``) read outside the throttle's
#: scripts (workers/workflow/rate_scripts.py): the rate in force and the limit estimate, calls/s.
TENANT_RATE_FIELDS = ("cur", "lim")


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

    def app_claim(self, template_id: str, display_name_digest: str) -> str:
        return f"{self.prefix}:app-claim:{template_id}:{display_name_digest}"

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

    def waiting(self, service_principal_id: str, template: str) -> str:
        """Requests of other callers queued behind the in-flight one (a list, oldest first)."""
        return f"{self.prefix}:waiting:{service_principal_id}:{template}"

    def by_state(self, state_value: str) -> str:
        """The in-flight set of a state (only ``queued`` and ``running`` are written)."""
        return f"{self.prefix}:state:{state_value}"

    def _scope(self, caller: str | None) -> str:
        return f"{self.prefix}:all" if caller is None else f"{self.prefix}:caller:{caller}"

    def caller_index(self, caller: str | None) -> str:
        """A caller's listing index (None: every caller's, for operators)."""
        return f"{self._scope(caller)}:index"

    def caller_state(self, caller: str | None, state_value: str) -> str:
        """A caller's records in one state (None: every caller's)."""
        return f"{self._scope(caller)}:state:{state_value}"

    def caller_principal(self, caller: str | None, service_principal_id: str) -> str:
        """A caller's records for one service principal (None: every caller's)."""
        return f"{self._scope(caller)}:sp:{service_principal_id}"

    @property
    def expiring(self) -> str:
        """Finished records scored by the time they expire (member: JSON [id, caller, sp])."""
        return f"{self.prefix}:expiring"

    @property
    def wake(self) -> str:
        """The channel a new job is announced on, so an idle worker polls at once."""
        return f"{self.prefix}:wake"

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

    def callback_body(self, message_id: str) -> str:
        """The stored body of one callback message (every retry sends these bytes)."""
        return f"{self.prefix}:callback-body:{message_id}"

    def callbacks_pending(self, caller: str) -> str:
        """A caller's notifications waiting for a retry (score: when their window ends)."""
        return f"{self.prefix}:callbacks-pending:{caller}"

    def ui_login_attempts(self, client_address: str) -> str:
        """Sign-in attempts on the status page from one client address (a counter)."""
        return f"{self.prefix}:ui-login:{client_address}"

    def application(self, service_principal_id: str) -> str:
        return f"{self.prefix}:app:{service_principal_id}"

    @property
    def applications(self) -> str:
        return f"{self.prefix}:apps"

    def applications_by_health(self, health: str) -> str:
        return f"{self.prefix}:apps:health:{health}"

    @property
    def watch(self) -> str:
        return f"{self.prefix}:watch"

    def auto_restarts(self, service_principal_id: str, job_id: str) -> str:
        """When the watch auto-restarted a job (a sorted set of request ids by time, 24 h)."""
        return f"{self.prefix}:auto-restart:{service_principal_id}:{job_id}"

    def application_event(self, event_id: str) -> str:
        return f"{self.prefix}:app-event:{event_id}"

    def on_demand_window(self, tenant: str) -> str:
        """A tenant's recent provisionOnDemand calls (the shared 5-per-10-s limiter)."""
        return f"{self.prefix}:on-demand:{tenant}"
