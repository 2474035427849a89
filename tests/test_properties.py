"""Property tests (hypothesis, bounded): the webhook signature verifiers and the Retry-After
parser. Examples per test are capped so the file runs in a few seconds on CI."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.api.webhooks.sources import Rejected, verify_hub_signature, verify_standard
from service.core import signing
from workers.workflow.retry import parse_retry_after

BOUNDED = settings(max_examples=150, deadline=None)
NOW = 1_764_331_200

secrets_raw = st.binary(min_size=16, max_size=48)
whsecs = secrets_raw.map(lambda b: "whsec_" + base64.b64encode(b).decode())
bodies = st.binary(max_size=512)
msg_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64
)


def hub(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard(secret: str, msg_id: str, ts: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signing.sign(secret, msg_id, ts, body),
    }


def flip(body: bytes, index: int, delta: int) -> bytes:
    if not body:
        return bytes([delta])
    i = index % len(body)
    return body[:i] + bytes([(body[i] + delta) % 256]) + body[i + 1 :]


# -- Jira / GitHub style: sha256=<hex> over the raw body ------------------------------------------
@BOUNDED
@given(secret=st.text(min_size=1, max_size=40), body=bodies)
def test_hub_valid_signature_always_accepted(secret: str, body: bytes) -> None:
    verify_hub_signature((secret,), body, hub(secret, body))
    verify_hub_signature(("other", secret), body, hub(secret, body).upper().replace("SHA", "sha"))


@BOUNDED
@given(
    secret=st.text(min_size=1, max_size=40),
    body=bodies,
    index=st.integers(min_value=0),
    delta=st.integers(1, 255),
)
def test_hub_any_single_byte_change_rejected(
    secret: str, body: bytes, index: int, delta: int
) -> None:
    with pytest.raises(Rejected):
        verify_hub_signature((secret,), flip(body, index, delta), hub(secret, body))


@BOUNDED
@given(header=st.text(max_size=100), body=bodies)
def test_hub_garbage_header_never_accepted_never_crashes(header: str, body: bytes) -> None:
    with pytest.raises(Rejected):
        verify_hub_signature(("s3cret",), body, header)


# -- Standard Webhooks --------------------------------------------------------------------------
@BOUNDED
@given(
    secret=whsecs,
    msg_id=msg_ids,
    body=bodies,
    skew=st.integers(-300, 300),
)
def test_standard_valid_signature_within_tolerance_accepted(
    secret: str, msg_id: str, body: bytes, skew: int
) -> None:
    headers = standard(secret, msg_id, NOW + skew, body)
    assert verify_standard((secret,), headers, body, tolerance_s=300, now=NOW) == msg_id


@BOUNDED
@given(
    secret=whsecs,
    old=whsecs,
    msg_id=msg_ids,
    body=bodies,
)
def test_standard_rotation_any_listed_secret_signs(
    secret: str, old: str, msg_id: str, body: bytes
) -> None:
    headers = standard(old, msg_id, NOW, body)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert verify_standard((secret, old), headers, body, now=NOW) == msg_id


@BOUNDED
@given(
    secret=whsecs,
    msg_id=msg_ids,
    body=bodies,
    index=st.integers(min_value=0),
    delta=st.integers(1, 255),
)
def test_standard_any_single_byte_change_rejected(
    secret: str, msg_id: str, body: bytes, index: int, delta: int
) -> None:
    headers = standard(secret, msg_id, NOW, body)
    with pytest.raises(Rejected):
        verify_standard((secret,), headers, flip(body, index, delta), now=NOW)


@BOUNDED
@given(
    secret=whsecs,
    msg_id=msg_ids,
    body=bodies,
    skew=st.one_of(st.integers(301, 10**9), st.integers(-(10**9), -301)),
)
def test_standard_timestamps_outside_tolerance_rejected(
    secret: str, msg_id: str, body: bytes, skew: int
) -> None:
    assume(NOW + skew >= 0)
    headers = standard(secret, msg_id, NOW + skew, body)  # correctly signed, but stale/future
    with pytest.raises(Rejected):
        verify_standard((secret,), headers, body, tolerance_s=300, now=NOW)


@BOUNDED
@given(
    secret=whsecs,
    msg_id=msg_ids,
    other_id=msg_ids,
    body=bodies,
)
def test_standard_signature_is_bound_to_the_id(
    secret: str, msg_id: str, other_id: str, body: bytes
) -> None:
    assume(msg_id != other_id)
    headers = standard(secret, msg_id, NOW, body)
    headers["webhook-id"] = other_id
    with pytest.raises(Rejected):
        verify_standard((secret,), headers, body, now=NOW)


@BOUNDED
@given(
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature"]),
        st.text(max_size=80),
    ),
    body=bodies,
)
def test_standard_garbage_headers_never_accepted_never_crash(
    headers: dict[str, str], body: bytes
) -> None:
    with pytest.raises(Rejected):
        verify_standard(("whsec_" + base64.b64encode(b"k" * 24).decode(),), headers, body, now=NOW)


# -- Retry-After --------------------------------------------------------------------------------
@BOUNDED
@given(value=st.one_of(st.none(), st.text(max_size=60)))
def test_retry_after_never_raises_never_negative(value: str | None) -> None:
    result = parse_retry_after(value)
    assert result is None or result >= 0


@BOUNDED
@given(seconds=st.integers(0, 10**7))
def test_retry_after_integers_round_trip(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == seconds
    assert parse_retry_after(f" {seconds} ") == seconds


@BOUNDED
@given(value=st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False))
def test_retry_after_decimals_round_trip(value: object) -> None:
    text = str(value)
    assume("E" not in text.upper())
    assert parse_retry_after(text) == pytest.approx(float(text))


@BOUNDED
@given(offset=st.integers(-(10**6), 10**7))
def test_retry_after_http_dates_within_a_second(offset: int) -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    when = now + timedelta(seconds=offset)
    parsed = parse_retry_after(format_datetime(when, usegmt=True), now=now)
    assert parsed is not None
    assert abs(parsed - max(0, offset)) <= 1
