"""Configuration: one frozen settings object, built once at start-up and passed explicitly.

Every variable has the prefix ``PROVISIONER_`` and may also come from a ``.env`` file in the
working directory. :func:`load_settings` turns any validation failure into one line that names
the variable and what is wrong, so an operator sees ``PROVISIONER_REDIS_URL: ...`` instead of a
traceback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.core.config_values import (
    ApiKey,
    NamedSecret,
    existing_file,
    https_url,
    microsoft_host,
    parse_api_keys,
    parse_callback_secrets,
    parse_watch_schedule,
    read_api_keys_file,
    split_list,
)
from service.core.errors import ConfigError
from service.core.redis import check_redis_url

ENV_PREFIX = "PROVISIONER_"
#: How a URL setting is named in its error message.
_URL_NAMES = {
    "entra_authority_host": "the Entra authority host",
    "authority_host": "the authority host",
    "graph_url": "the Graph URL",
}


class Settings(BaseSettings):
    """Everything the API, the workers and the local runner read from the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = Field(default="provisioner:queue", min_length=1, max_length=200)

    # The Entra app the workers act as.
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_certificate_path: Path | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    graph_scope: str | None = None
    ca_bundle: Path | None = None

    # Intake.
    api_keys: Annotated[tuple[ApiKey, ...], NoDecode] = ()
    encryption_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="PROVISIONER_ENCRYPTION_KEY"
    )
    api_keys_file: Path | None = None
    api_keys_reload_s: float = Field(default=5.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    record_ttl_s: int = Field(default=30 * 24 * 3600, ge=3600)
    #: How long a finished record (and its listing-index entries) is kept after its last write.
    record_retention_s: int = Field(default=30 * 24 * 3600, ge=60)
    #: /ui's session cookie always ``Secure`` (behind a TLS proxy); else only over https.
    ui_cookie_secure: bool = False
    #: Sign-in attempts on /ui per client address and window (0: no limit); then 429.
    ui_login_rate_limit: int = Field(default=10, ge=0)
    ui_login_rate_window_s: float = Field(default=60.0, gt=0)

    # Entra ID access tokens as callers (on when ENTRA_AUDIENCE is set).
    entra_audience: str | None = None
    entra_tenant_id: str | None = None
    entra_authority_host: str | None = None
    entra_leeway_s: float = Field(default=60.0, ge=0, le=300)
    jwks_refresh_s: float = Field(default=60.0, ge=0)

    # Authorization, limits, webhooks, SSRF.
    access_policy_file: Path | None = None
    intake_rate_limit: int = Field(default=0, ge=0)
    intake_rate_window_s: float = Field(default=60.0, gt=0)
    max_queue_depth: int = Field(default=0, ge=0)
    webhooks_file: Path | None = None
    webhook_dedupe_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)
    callback_allowlist: Annotated[tuple[str, ...], NoDecode] = ()

    # Workers.
    worker_concurrency: int = Field(default=50, ge=1, le=10_000)
    step_timeout_s: int = Field(default=60, ge=5, le=3600)
    graph_connect_timeout_s: float = Field(default=10.0, gt=0)
    graph_timeout_s: float = Field(default=30.0, gt=0)
    inprocess_wait_s: float = Field(default=5.0, ge=0)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    max_retry_after_s: float = Field(default=300.0, gt=0)
    retry_budget_s: float = Field(default=900.0, gt=0)
    consistency_budget_s: float = Field(default=300.0, gt=0)
    verify_timeout_s: float = Field(default=120.0, gt=0)
    create_settle_s: float = Field(default=300.0, ge=0)
    create_poll_cap_s: float = Field(default=30.0, gt=0)
    job_claim_ttl_s: float = Field(default=30.0, ge=1)
    verify_poll_s: float = Field(default=2.0, gt=0)
    verify_settle_s: float = Field(default=15.0, ge=0)
    # Gallery apps (issue 13): instantiate has no idempotency key (docs/workflow.md).
    instantiate_settle_s: float = Field(default=120.0, ge=0)
    app_replication_budget_s: float = Field(default=600.0, gt=0)
    app_poll_s: float = Field(default=5.0, gt=0)

    callback_secrets: Annotated[tuple[NamedSecret, ...], NoDecode] = ()
    writeback_file: Path | None = None
    callback_window_s: float = Field(default=24 * 3600, gt=0)
    callback_timeout_s: float = Field(default=10.0, gt=0)
    #: Callbacks (and write-backs) of one caller that may wait for a retry at once; past it a
    #: failing one is given up at once (0: no cap). Keeps one broken receiver from filling queues.
    callback_max_pending: int = Field(default=100, ge=0)

    tenant_rate_limit: float = Field(default=0.0, ge=0)
    tenant_rate_burst: int = Field(default=10, ge=1)
    throttle_coordination: bool = True
    tenant_rate_adaptive: bool = True
    tenant_rate_start: float = Field(default=10.0, gt=0)
    tenant_rate_target_usage: float = Field(default=0.95, gt=0, le=1)
    #: provisionOnDemand: Graph allows 5 calls per 10 s per tenant, one window in Redis for all
    #: workers, 1 s longer so a slot's way to Graph cannot put 6 in Graph's 10 s.
    on_demand_limit: int = Field(default=5, ge=1, le=100)
    on_demand_window_s: float = Field(default=11.0, gt=0, le=3600)
    worker_name: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        min_length=1,
        max_length=200,
    )
    worker_metrics_port: int = Field(default=9109, ge=0, le=65535)
    health_check_interval_s: int = Field(default=10, ge=1, le=3600)
    reconcile_interval_s: int = Field(default=30, ge=5, le=3600)
    stuck_grace_s: float = Field(default=900.0, gt=0)

    # The health watch over started and adopted jobs (workers/watch, docs/workflow.md).
    watch_enabled: bool = True
    #: Seconds between checks of one job after an end or a health change; the last repeats.
    watch_schedule: Annotated[tuple[int, ...], NoDecode] = (60, 300, 900, 3600, 21600)
    watch_interval_s: int = Field(default=5, ge=1, le=60)
    watch_max_calls_per_s: float = Field(default=1.0, gt=0)
    watch_jitter: float = Field(default=0.1, ge=0, le=0.5)
    #: Opt-in (workers/watch/auto_restart.py): restart transient quarantines, N a job a day.
    auto_restart: Literal["off", "quarantine"] = "off"
    auto_restart_max_per_day: int = Field(default=3, ge=1, le=24)

    otel_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, raw: object) -> tuple[ApiKey, ...]:
        return parse_api_keys(raw)

    @field_validator("callback_secrets", mode="before")
    @classmethod
    def _callback_secrets(cls, raw: object) -> tuple[NamedSecret, ...]:
        return parse_callback_secrets(raw)

    def callback_secret(self, caller: str) -> str | None:
        """The Standard Webhooks secret (``whsec_...``) for signing a caller's callbacks."""
        return next((p.value for p in self.callback_secrets if p.name == caller), None)

    @field_validator("encryption_keys", "callback_allowlist", mode="before")
    @classmethod
    def _lists(cls, raw: object) -> tuple[str, ...]:
        return split_list(raw)

    @field_validator("watch_schedule", mode="before")
    @classmethod
    def _watch_schedule(cls, raw: object) -> tuple[int, ...]:
        return parse_watch_schedule(raw)

    @field_validator("api_keys_file")
    @classmethod
    def _api_keys_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_api_keys_file(value)
        return value

    @field_validator("entra_authority_host", "authority_host", "graph_url")
    @classmethod
    def _https_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else https_url(value, _URL_NAMES[str(info.field_name)])

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("ca_bundle", "client_certificate_path", "writeback_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        return None if value is None else existing_file(value)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        # arq keeps a killed worker's job for its longest function timeout + 10 s: a callback
        # timeout beyond the step timeout would lengthen every recovery after a SIGKILL.
        if self.callback_timeout_s + 5 > self.step_timeout_s:
            raise ValueError(
                "PROVISIONER_CALLBACK_TIMEOUT_S: must be at least 5 s below "
                f"PROVISIONER_STEP_TIMEOUT_S ({self.step_timeout_s} s)"
            )
        if self.client_secret is not None and self.client_certificate_path is not None:
            raise ValueError(
                "set PROVISIONER_CLIENT_SECRET or PROVISIONER_CLIENT_CERTIFICATE_PATH, not both"
            )
        if self.entra_audience and not (self.entra_tenant_id or self.tenant_id):
            raise ValueError(
                "PROVISIONER_ENTRA_AUDIENCE needs PROVISIONER_ENTRA_TENANT_ID or "
                "PROVISIONER_TENANT_ID (the tenant whose tokens are accepted)"
            )
        return self

    @property
    def entra_discovery_url(self) -> str:
        """The OIDC discovery document of the tenant whose tokens callers present."""
        host = self.entra_authority_host or self.authority_host
        tenant = self.entra_tenant_id or self.tenant_id
        return f"{host}/{tenant}/v2.0/.well-known/openid-configuration"

    @property
    def tenant_configured(self) -> bool:
        """True when a tenant and an app identity are configured (the workers can reach Graph)."""
        return bool(
            self.tenant_id
            and self.client_id
            and (self.client_secret is not None or self.client_certificate_path is not None)
        )

    @property
    def authority(self) -> str:
        """The msal authority: the authority host followed by the tenant id."""
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def microsoft_authority(self) -> bool:
        """Whether the authority host is Microsoft's own (msal may run instance discovery)."""
        return microsoft_host(self.authority_host)

    @property
    def scope(self) -> str:
        """The token scope: ``GRAPH_SCOPE`` or the Graph URL's origin followed by ``/.default``."""
        if self.graph_scope:
            return self.graph_scope
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    def require_tenant(self) -> None:
        """Raise :class:`ConfigError` naming the first missing variable a worker needs."""
        for name in ("tenant_id", "client_id"):
            if not getattr(self, name):
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}: required to call Microsoft Graph")
        if self.client_secret is None and self.client_certificate_path is None:
            raise ConfigError(
                f"{ENV_PREFIX}CLIENT_SECRET or {ENV_PREFIX}CLIENT_CERTIFICATE_PATH: "
                "one is required to call Microsoft Graph"
            )


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        first = e.errors()[0]
        if not first["loc"]:  # a rule across fields names its variables in the message
            raise ConfigError(str(first["msg"]).removeprefix("Value error, ")) from e
        field = str(first["loc"][0])
        name = field if field.startswith(ENV_PREFIX) else f"{ENV_PREFIX}{field.upper()}"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from e
