"""Records and a store for the core tests: a record for one principal, and a store over a real
Redis with a fresh encryption key (the fixture ``store`` in tests/conftest.py)."""

from __future__ import annotations

from uuid import uuid4

from cryptography.fernet import Fernet
from redis.asyncio import Redis

from service.core.crypto import CredentialCipher
from service.core.keys import Keys
from service.core.models import Record
from service.core.store import Store

SP = "6f1c3b9e-2a4d-4c8e-9b1f-0d2e3f4a5b6c"
QUEUE = "provisioner:queue"
K = Keys(QUEUE)


def new_store(redis: Redis) -> Store:
    """A store on ``QUEUE`` that encrypts credentials with a key of its own."""
    cipher = CredentialCipher((Fernet.generate_key().decode(),))
    return Store(redis, queue_name=QUEUE, record_ttl_s=3600, cipher=cipher)


def rec(sp: str = SP, template: str | None = None, **kw: object) -> Record:
    """A new queued record for ``sp`` (and ``template``); ``kw`` sets more fields."""
    return Record(
        id=uuid4().hex,
        service_principal_id=sp,
        template_id=template,
        requested_template_id=template,
        **kw,  # type: ignore[arg-type]
    )
