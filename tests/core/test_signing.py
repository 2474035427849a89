"""Standard Webhooks signatures, checked against the format's reference library both ways."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.core.signing import headers, secret_key, sign, verify

SECRET = "whsec_" + base64.b64encode(b"a 32-byte key for the signatures").decode()
OLD = "whsec_" + base64.b64encode(b"the key before the last rotation").decode()
BODY = b'{"type":"provisioning.succeeded"}'


def test_what_we_sign_the_reference_library_verifies() -> None:
    sent = headers(SECRET, "msg_1", int(time.time()), BODY)
    reference = Webhook(SECRET)
    assert reference.verify(BODY, sent) == {"type": "provisioning.succeeded"}
    tampered = {**sent, "webhook-id": "msg_2"}
    with pytest.raises(WebhookVerificationError):
        reference.verify(BODY, tampered)


def test_what_the_reference_library_signs_we_verify() -> None:
    at = datetime.fromtimestamp(1_900_000_000, tz=UTC)
    header = Webhook(SECRET).sign("msg_9", at, BODY.decode())
    assert verify([SECRET], "msg_9", 1_900_000_000, BODY, header)
    assert not verify([SECRET], "msg_9", 1_900_000_001, BODY, header)


def test_any_of_several_signatures_and_secrets_matches_during_a_rotation() -> None:
    both = f"{sign(OLD, 'm', 5, BODY)} {sign(SECRET, 'm', 5, BODY)}"
    assert verify([SECRET], "m", 5, BODY, both)
    assert verify([OLD, "whsec_bm90IHRoaXM="], "m", 5, BODY, sign(OLD, "m", 5, BODY))
    assert not verify([SECRET], "m", 5, BODY, sign(OLD, "m", 5, BODY))
    assert not verify([SECRET], "m", 5, BODY, "v2," + sign(SECRET, "m", 5, BODY)[3:])


def test_secret_padding_is_optional_and_a_bare_secret_is_its_bytes() -> None:
    padded = "whsec_" + base64.b64encode(b"key!").decode()
    assert padded.endswith("=")
    assert secret_key(padded.rstrip("=")) == secret_key(padded) == b"key!"
    assert secret_key("plain") == b"plain"


def test_there_is_no_unsigned_message() -> None:
    with pytest.raises(ValueError, match="needs a secret"):
        headers("", "m", 1, BODY)
