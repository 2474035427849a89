"""Fault profile (what to inject) and the decisions drawn from it (pure; injectable RNG/clock)."""

from __future__ import annotations

import math
import random
from collections import defaultdict, deque
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox.gallery_faults import GalleryFaults
from sandbox.seed import parse_document

GRAPH_ROUTES = (
    "templates.list",
    "jobs.list",
    "jobs.create",
    "jobs.get",
    "jobs.delete",
    "jobs.start",
    "jobs.pause",
    "jobs.restart",
    "jobs.validateCredentials",
    "jobs.validateCredentialsCollection",
    "secrets.put",
    "secrets.get",
    "auditLogs.provisioning",
    "jobs.provisionOnDemand",
    # the gallery, principal, app role assignment and schema routes (onboarding_routes)
    "applicationTemplates.list",
    "applicationTemplates.get",
    "applicationTemplates.instantiate",
    "servicePrincipals.list",
    "servicePrincipals.get",
    "appRoleAssignedTo.list",
    "appRoleAssignedTo.add",
    "schema.get",
    "schema.put",
)
TOKEN_ROUTE = "token"  # noqa: S105 - a route name
ALL_ROUTE = "*"
ERROR_STATUSES = (429, 500, 502, 503, 504)
RetryAfterStyle = Literal["integer", "decimal", "http-date", "absent", "mixed"]
MIXED_ROTATION: tuple[RetryAfterStyle, ...] = ("integer", "decimal", "http-date", "absent")


class FaultProfile(BaseModel):
    """Everything injectable. ``errors`` maps a route name (or ``*`` = every Graph route) to
    ``{status: probability}``; a route's own entry overrides ``*`` status by status."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0, ge=0)
    latency_spread_ms: float = Field(default=0, ge=0)
    latency_token: bool = False
    rate_limit: int = Field(default=0, ge=0)
    rate_window_s: float = Field(default=1.0, gt=0)
    # Admitted calls carry x-ms-throttle-limit-percentage (the window's use of rate_limit, as
    # Graph's 0.8-1.8 fraction) once the tenant is above this share of it; 0: never.
    limit_percentage_from: float = Field(default=0.8, ge=0, le=1)
    retry_after_style: RetryAfterStyle = "integer"
    retry_after_s: float = Field(default=1.0, ge=0)
    errors: dict[str, dict[int, float]] = Field(default_factory=dict)
    lost_create_rate: float = Field(default=0, ge=0, le=1)
    replication_lag_ms: float = Field(default=0, ge=0)
    start_conflicts: int = Field(default=0, ge=0)
    page_size: int = Field(default=0, ge=0)
    activation_delay_ms: float = Field(default=1000, ge=0)
    create_status: Literal[200, 201] = 201
    # Eventual consistency of the job list: a job made less than this ago is not listed yet.
    job_list_lag_s: float = Field(default=0, ge=0)
    # Probability that jobs.create makes the job, then answers 500 UnknownError anyway.
    create_5xx_after_made_rate: float = Field(default=0, ge=0, le=1)
    # Roles put into every token issued from now on instead of the application's own
    # (``[]`` strips them all); None: the application's roles.
    token_roles: list[str] | None = None
    # Job behaviour after start (a principal's seed fields override these per principal).
    quarantine_after_s: float | None = Field(default=None, ge=0)
    quarantine_reason: str = ""
    quarantine_status_code: Literal["Paused", "Quarantine"] = "Paused"
    fail_cycles: bool = False
    cycle_s: float = Field(default=2400, gt=0)
    initial_status_code: Literal["NotConfigured", "Paused"] = "NotConfigured"
    random_seed: int | None = None
    gallery: GalleryFaults = Field(default_factory=GalleryFaults)  # sandbox/gallery.py

    @field_validator("errors")
    @classmethod
    def _check_errors(cls, value: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
        for route, rates in value.items():
            if route not in (*GRAPH_ROUTES, TOKEN_ROUTE, ALL_ROUTE):
                raise ValueError(f"unknown route {route!r}")
            for status, rate in rates.items():
                if status not in ERROR_STATUSES:
                    raise ValueError(f"status {status} not injectable (use {ERROR_STATUSES})")
                if not 0 <= rate <= 1:
                    raise ValueError(f"rate {rate} for {route}/{status} not in [0, 1]")
        return value

    @model_validator(mode="after")
    def _sum_at_most_one(self) -> FaultProfile:
        for route in (*GRAPH_ROUTES, TOKEN_ROUTE):
            if sum(self.error_rates(route).values()) > 1 + 1e-9:
                raise ValueError(f"error rates for {route} add up to more than 1")
        return self

    def error_rates(self, route: str) -> dict[int, float]:
        rates = {} if route == TOKEN_ROUTE else dict(self.errors.get(ALL_ROUTE, {}))
        rates.update(self.errors.get(route, {}))
        return {s: r for s, r in rates.items() if r > 0}

    def merged(self, patch: dict[str, Any]) -> FaultProfile:
        """A new profile: this one with ``patch`` applied (``errors`` merged per route)."""
        data = self.model_dump()
        for key, value in patch.items():
            if key == "errors" and isinstance(value, dict):
                errors: dict[str, Any] = {k: dict(v) for k, v in data["errors"].items()}
                for route, rates in value.items():
                    if rates is None:
                        errors.pop(route, None)
                    else:
                        errors.setdefault(route, {}).update(
                            {int(s): r for s, r in dict(rates).items()}
                        )
                data["errors"] = errors
            else:
                data[key] = value
        return FaultProfile.model_validate(data)


def load_profile(path: Path) -> FaultProfile:
    return FaultProfile.model_validate(parse_document(path.read_text("utf-8")) or {})


class FaultEngine:
    """Draws fault decisions. Holds the run-time counters a profile needs (rate-limit windows,
    start conflicts per job, the mixed Retry-After rotation)."""

    def __init__(
        self,
        profile: FaultProfile,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        self.profile = profile
        self.reset()

    @property
    def profile(self) -> FaultProfile:
        return self._profile

    @profile.setter
    def profile(self, profile: FaultProfile) -> None:
        self._profile = profile
        if profile.random_seed is not None:
            self._rng = random.Random(profile.random_seed)
        elif self._rng is None:
            self._rng = random.Random()

    @property
    def rng(self) -> random.Random:
        assert self._rng is not None
        return self._rng

    def reset(self) -> None:
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self._start_calls: dict[str, int] = defaultdict(int)
        self._mixed_index = 0

    def latency_s(self, route: str) -> float:
        p = self.profile
        if route == TOKEN_ROUTE and not p.latency_token:
            return 0.0
        spread = self.rng.uniform(0, p.latency_spread_ms) if p.latency_spread_ms else 0.0
        return (p.latency_ms + spread) / 1000

    def rate_limited(self, tenant: str) -> float | None:
        """Seconds until the tenant's window frees a slot, or None if this call is admitted."""
        p = self.profile
        if p.rate_limit <= 0:
            return None
        now = self._clock()
        window = self._windows[tenant]
        while window and window[0] <= now - p.rate_window_s:
            window.popleft()
        if len(window) >= p.rate_limit:
            return max(window[0] + p.rate_window_s - now, 0.001)
        window.append(now)
        return None

    def limit_percentage(self, tenant: str) -> str | None:
        """The ``x-ms-throttle-limit-percentage`` of a call just admitted for ``tenant``:
        its window's use of the rate limit, when above ``limit_percentage_from``."""
        p = self.profile
        if p.rate_limit <= 0 or p.limit_percentage_from <= 0:
            return None
        usage = len(self._windows[tenant]) / p.rate_limit
        return f"{usage:.2f}" if usage > p.limit_percentage_from else None

    def random_error(self, route: str) -> int | None:
        rates = self.profile.error_rates(route)
        if not rates:
            return None
        draw = self.rng.random()
        cumulative = 0.0
        for status, rate in sorted(rates.items()):
            cumulative += rate
            if draw < cumulative:
                return status
        return None

    def lose_create(self) -> bool:
        rate = self.profile.lost_create_rate
        return rate > 0 and self.rng.random() < rate

    def create_5xx_after_made(self) -> bool:
        rate = self.profile.create_5xx_after_made_rate
        return rate > 0 and self.rng.random() < rate

    def start_conflict(self, job_id: str) -> bool:
        """409 for the first ``start_conflicts`` start calls on each job."""
        self._start_calls[job_id] += 1
        return self._start_calls[job_id] <= self.profile.start_conflicts

    def in_replication_lag(self, created_at: float) -> bool:
        lag = self.profile.replication_lag_ms
        return lag > 0 and (self._clock() - created_at) * 1000 < lag

    def retry_after(self, seconds: float) -> str | None:
        """The Retry-After header value for ``seconds`` in the configured style (None = absent)."""
        style = self.profile.retry_after_style
        if style == "mixed":
            style = MIXED_ROTATION[self._mixed_index % len(MIXED_ROTATION)]
            self._mixed_index += 1
        return format_retry_after(style, seconds, self._wall_clock())


def format_retry_after(style: RetryAfterStyle, seconds: float, now: float) -> str | None:
    if style == "absent":
        return None
    if style == "decimal":
        return f"{max(seconds, 0.001):.3f}"
    if style == "http-date":
        return formatdate(math.ceil(now + seconds), usegmt=True)
    return str(max(math.ceil(seconds), 1))
