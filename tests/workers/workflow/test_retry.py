"""The retry policy table, Retry-After parsing and backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from service.core.errors import GraphError, GraphTransportError
from workers.workflow.retry import Backoff, CallKind, Disposition, classify, parse_retry_after

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("2.128", 2.128),  # Graph's own documented sample
        (" 7 ", 7.0),
        ("30,120", 30.0),  # seen from Graph; msgraph-sdk-python issue 1159
        ("0", 0.0),
        ("-4", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date() -> None:
    when = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(when, now=NOW) == pytest.approx(42.0)
    past = format_datetime(NOW - timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0


def _err(status: int, code: str = "x") -> GraphError:
    return GraphError(status, code, "")


@pytest.mark.parametrize(
    ("status", "code", "kind", "expected"),
    [
        (429, "TooManyRequests", CallKind.READ, Disposition.THROTTLED),
        (429, "TooManyRequests", CallKind.CREATE, Disposition.THROTTLED),
        (503, "ServiceUnavailable", CallKind.READ, Disposition.TRANSIENT),
        (504, "GatewayTimeout", CallKind.WRITE, Disposition.TRANSIENT),
        (500, "InternalServerError", CallKind.READ, Disposition.TRANSIENT),
        (502, "BadGateway", CallKind.WRITE, Disposition.TRANSIENT),
        (500, "InternalServerError", CallKind.CREATE, Disposition.AMBIGUOUS),
        (503, "ServiceUnavailable", CallKind.CREATE, Disposition.AMBIGUOUS),
        (404, "Request_ResourceNotFound", CallKind.READ, Disposition.CONSISTENCY),
        (404, "Request_ResourceNotFound", CallKind.LOOKUP, Disposition.FATAL),
        (403, "Authorization_RequestDenied", CallKind.LOOKUP, Disposition.FATAL),
        (403, "Authorization_RequestDenied", CallKind.CREATE, Disposition.FATAL),
        (403, "Authorization_RequestDenied", CallKind.WRITE, Disposition.CONSISTENCY),
        (401, "UnknownError", CallKind.LOOKUP, Disposition.CONSISTENCY),
        (401, "UnknownError", CallKind.CREATE, Disposition.CONSISTENCY),
        (401, "UnknownError", CallKind.READ, Disposition.CONSISTENCY),
        (401, "InvalidAuthenticationToken", CallKind.READ, Disposition.FATAL),
        (409, "Conflict", CallKind.WRITE, Disposition.CONSISTENCY),
        (400, "BadRequest", CallKind.WRITE, Disposition.FATAL),
        (400, "BadRequest", CallKind.CREATE, Disposition.FATAL),
        (405, "MethodNotAllowed", CallKind.READ, Disposition.FATAL),
        (501, "NotImplemented", CallKind.READ, Disposition.FATAL),
    ],
)
def test_policy_table(status: int, code: str, kind: CallKind, expected: Disposition) -> None:
    assert classify(_err(status, code), kind) is expected


def test_no_answer_is_ambiguous_only_for_create() -> None:
    lost = GraphTransportError("POST", "https://graph/x", "ServerDisconnectedError", "crid")
    assert classify(lost, CallKind.CREATE) is Disposition.AMBIGUOUS
    assert classify(lost, CallKind.READ) is Disposition.TRANSIENT
    assert classify(lost, CallKind.WRITE) is Disposition.TRANSIENT


def test_backoff_honours_retry_after_capped() -> None:
    backoff = Backoff(base_s=1, cap_s=60, max_retry_after_s=300)
    assert backoff.delay(1, 2.128) == 2.128
    assert backoff.delay(1, 9999) == 300


def test_backoff_full_jitter_grows_and_is_capped() -> None:
    backoff = Backoff(base_s=1, cap_s=8)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (10, 8)]:
        samples = [backoff.delay(failures, None, rng) for _ in range(500)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.9  # the whole range is used
