"""Every end-to-end test doubles as a redaction test: after it, every ``*.log`` file its
processes wrote under ``tmp_path`` is searched for each secret the test module defines (module
constants and seed fields whose names say SECRET, KEY, TOKEN, PASSWORD or CREDENTIAL).
``test_redaction.py`` is the dedicated, exhaustive one (DEBUG logs, every kind of secret)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SECRET_NAME = re.compile(r"secret|key|token|password|credential", re.IGNORECASE)
_MIN_CHARS = 8


def secret_values(value: Any, named_secret: bool = False) -> set[str]:
    """String values held under secret-sounding names, at any depth of dicts and lists."""
    if isinstance(value, str):
        return {value} if named_secret and len(value) >= _MIN_CHARS else set()
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found |= secret_values(item, named_secret or bool(_SECRET_NAME.search(str(key))))
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secret_values(item, named_secret)
    return found


@pytest.fixture(autouse=True)
def no_secret_in_logs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    yield
    module_globals = {
        name: value for name, value in vars(request.module).items() if not name.startswith("_")
    }
    secrets = secret_values(module_globals)
    for log in sorted(tmp_path.rglob("*.log")):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret ({len(secret)} chars) leaked into {log.name}"
