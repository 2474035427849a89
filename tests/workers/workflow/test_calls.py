"""The client-request-id GUIDs CallRunner sends to Graph."""

from __future__ import annotations

import uuid

import pytest

from workers.workflow.calls import uuid5_text


@pytest.mark.parametrize(
    "name",
    ["", "a", "0f3c9e2b7d8a4c1e9b6f5a4d3c2b1a09/create_job/1/3", "é/ü/名前", "x" * 500],
)
def test_uuid5_text_is_uuid5(name: str) -> None:
    namespace = uuid.UUID("6f1c8a52-3f0e-4a55-9d0f-0c7a3b6e2d11")
    assert uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name))


def test_uuid5_text_differs_by_namespace() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert uuid5_text(a, "same") != uuid5_text(b, "same")
    assert uuid.UUID(uuid5_text(a, "same")).version == 5
