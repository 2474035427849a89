"""The webhook signature checks of each source kind: Jira's hub signature and its body's own
timestamp, Standard Webhooks headers (signed by the format's reference library), and every
rejection with a reason that names no secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from service.api.webhooks.signatures import (
    Rejected,
    check_jira_freshness,
    jira_delivery_key,
    verify_hub_signature,
    verify_standard,
)

BODY = json.dumps({"timestamp": 1_900_000_000_000, "issue": {"key": "OPS-1"}}).encode()
NOW = 1_900_000_000.0
SECRET = "whsec_" + base64.b64encode(b"standard webhooks test key 32by").decode()


def _hub(secret: str, body: bytes = BODY) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_hub_signature_by_any_configured_secret_passes() -> None:
    verify_hub_signature(("old", "new"), BODY, _hub("new"))
    verify_hub_signature(("old",), BODY, _hub("old").upper().replace("SHA256", "sha256"))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing signature"),
        ("sha1=abc", "unsupported signature scheme"),
        ("sha256=", "unsupported signature scheme"),
        (_hub("another"), "signature mismatch"),
        (_hub("new", BODY + b" "), "signature mismatch"),
    ],
)
def test_a_bad_hub_signature_is_rejected_with_a_reason(header: str | None, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        verify_hub_signature(("new",), BODY, header)
    assert info.value.reason == reason
    assert "new" not in info.value.reason.split()


def test_jira_freshness_reads_the_signed_bodys_own_timestamp() -> None:
    check_jira_freshness(json.loads(BODY), tolerance_s=300, now=NOW + 299)
    with pytest.raises(Rejected, match="outside the tolerance"):
        check_jira_freshness(json.loads(BODY), tolerance_s=300, now=NOW - 301)
    for payload in (
        {},
        {"timestamp": "1900000000000"},
        {"timestamp": True},
        {"timestamp": 10**16},
        [],
    ):
        with pytest.raises(Rejected, match="no integer timestamp"):
            check_jira_freshness(payload, tolerance_s=300, now=NOW)


def test_a_jira_delivery_is_known_by_the_hash_of_its_body() -> None:
    assert jira_delivery_key(BODY) == jira_delivery_key(bytes(BODY))
    assert jira_delivery_key(BODY) != jira_delivery_key(BODY + b"\n")
    assert jira_delivery_key(BODY).startswith("sha256:")


def _standard(msg_id: str = "msg_1", at: float = NOW) -> dict[str, str]:
    signature = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), BODY.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at)), "webhook-signature": signature}


def test_a_standard_delivery_signed_by_the_reference_library_gives_its_id() -> None:
    assert verify_standard((SECRET,), _standard(), BODY, now=NOW) == "msg_1"
    assert verify_standard(("whsec_bm90IHRoaXM=", SECRET), _standard(), BODY, now=NOW) == "msg_1"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing webhook-id"),
        ({**_standard(), "webhook-id": "x" * 257}, "invalid webhook-id"),
        ({**_standard(), "webhook-id": "a\nb"}, "invalid webhook-id"),
        ({**_standard(), "webhook-timestamp": "1e9"}, "invalid webhook-timestamp"),
        (_standard(at=NOW - 301), "timestamp outside the tolerance"),
        ({**_standard(), "webhook-id": "msg_2"}, "signature mismatch"),
    ],
)
def test_a_bad_standard_delivery_is_rejected_with_a_reason(
    headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Rejected) as info:
        verify_standard((SECRET,), headers, BODY, now=NOW)
    assert info.value.reason.startswith(reason)


def test_a_secret_that_is_not_base64_is_a_mismatch_not_a_crash() -> None:
    with pytest.raises(Rejected, match="signature mismatch"):
        verify_standard(("whsec_not*base64!",), _standard(), BODY, now=NOW)
