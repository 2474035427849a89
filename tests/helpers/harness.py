"""Running real arq workers against a real sandbox process: seeded ids, settings, a harness."""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis

from service.core.crypto import CredentialCipher, new_encryption_key
from service.core.models import Record
from service.core.request import Credential
from service.core.settings import Settings, load_settings
from service.core.store import Store
from tests.helpers.sandbox import SandboxProcess
from workers.main import build_worker

TENANT = "5f0c1e8a-7d2b-4e6f-9a1c-3b8d5e2f4a60"  # the default seed's tenant
SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"  # one template: salesforce
SCIM = "cbe29441-8636-4563-a4a8-c390c0e83cb4"  # scim + scimV2 (default)
GITHUB = "01d564d9-8163-464e-bc90-b017bf5c8fa6"  # two templates, none default
SLACK_NEW = "09bbdc7e-84d7-49a3-8f8d-3d7ffd3cb86a"  # 401 UnknownError for 3 s after reset
NO_TEMPLATES = "100b4cac-0cb0-4152-a6fe-58affba7b31d"
READ_ONLY_CLIENT = ("e2ae45db-2954-4e51-a7e6-3f3a57ae4b50", "sandbox-readonly-secret-5Kq2xP9rLm")
OWNED_BY_CLIENT = ("1fedcc39-7d0a-4937-aa10-e9c8366172c2", "sandbox-ownedby-secret-Zt4wV8nB3c")
ENCRYPTION_KEY = new_encryption_key()

FAST = {
    "inprocess_wait_s": 3.0,
    "backoff_base_s": 0.05,
    "backoff_cap_s": 0.5,
    "verify_poll_s": 0.05,
    "verify_timeout_s": 5.0,
    "verify_settle_s": 2.0,
    "create_settle_s": 1.0,
    "consistency_budget_s": 6.0,
    "retry_budget_s": 60.0,
    "step_timeout_s": 20,
}


def worker_settings(sb: SandboxProcess, redis_url: str, **overrides: Any) -> Settings:
    env = {k.removeprefix("PROVISIONER_").lower(): v for k, v in sb.env().items()}
    values: dict[str, Any] = {
        **env,
        "redis_url": redis_url,
        "queue_name": f"test:{uuid.uuid4().hex[:8]}",
        "encryption_keys": ENCRYPTION_KEY,
        **FAST,
        **overrides,
    }
    return load_settings(**values)


class Harness:
    """Submit requests straight to the store and drain them with a burst-mode arq worker."""

    def __init__(self, settings: Settings, redis: Redis, sandbox: SandboxProcess) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.store = Store(
            redis,
            queue_name=settings.queue_name,
            record_ttl_s=settings.record_ttl_s,
            cipher=CredentialCipher(settings.encryption_keys),
        )
        self.last_deps: Any = None

    async def submit(
        self,
        sp: str,
        template: str | None = None,
        credentials: dict[str, str] | None = None,
        start: bool = True,
        callback_url: str | None = None,
        caller: str = "",
        external_reference: str | None = None,
    ) -> Record:
        record = Record(
            id=uuid.uuid4().hex,
            service_principal_id=sp,
            requested_template_id=template,
            template_id=template,
            has_credentials=bool(credentials),
            start=start,
            callback_url=callback_url,
            caller=caller,
            external_reference=external_reference,
        )
        creds = (
            [Credential(key=k, value=v) for k, v in credentials.items()]  # type: ignore[arg-type]
            if credentials
            else None
        )
        accepted, created = await self.store.accept(record, creds)
        assert created
        return accepted

    async def drain(self, **overrides: Any) -> None:
        worker = build_worker(
            self.settings, burst=True, poll_delay=0.05, handle_signals=False, **overrides
        )
        try:
            await worker.main()
            self.last_deps = worker.ctx["deps"]  # what the run used (its throttle's counts)
        finally:
            await worker.close()

    async def run(self, sp: str, **submit: Any) -> Record:
        """Submit a request, drain the queue with a burst worker and return the record."""
        rec = await self.submit(sp, **submit)
        await self.drain()
        return await self.get(rec.id)

    async def get(self, request_id: str) -> Record:
        record = await self.store.get(request_id)
        assert record is not None
        return record


def jobs_of(stats: dict[str, Any], sp: str) -> list[dict[str, Any]]:
    """The sandbox's jobs of principal ``sp`` in a ``stats()`` answer."""
    return list(stats["jobs"].get(sp, []))
