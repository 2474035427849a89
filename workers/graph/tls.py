"""Trust for outbound TLS: the system's CAs plus ``PROVISIONER_CA_BUNDLE``, for msal and Graph.

msal talks through ``requests``, which lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a
session's ``verify=`` without a word; enterprise machines and CI set those. The session built
here pins ``verify`` after requests has merged the environment, so the extra CA is trusted
whatever the environment says, while proxies (``HTTPS_PROXY``, ``NO_PROXY``) are still read
from it. The Graph client gets an ``ssl.SSLContext`` with the same trust.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import certifi
import requests


def _base_bundle() -> Path:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return Path(certifi.where())


def combined_bundle(extra: Path | None) -> str:
    """A PEM file trusting the usual CAs and, when given, the extra bundle. It is named after
    its content, so every process with the same trust shares one file instead of adding its own."""
    base = _base_bundle()
    if extra is None:
        return str(base)
    content = base.read_bytes() + b"\n" + extra.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:20]
    path = Path(tempfile.gettempdir()) / f"provisioner-ca-{digest}.pem"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix="provisioner-ca-", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)  # atomic: a concurrent reader sees all of it or nothing
    return str(path)


class PinnedVerifySession(requests.Session):
    """A requests session whose ``verify`` the environment cannot override."""

    def __init__(self, verify: str) -> None:
        super().__init__()
        self.verify = verify

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged["verify"] = self.verify
        return merged


def ssl_context(extra: Path | None) -> ssl.SSLContext:
    """The SSL context for Graph calls: default trust (honours SSL_CERT_FILE) plus the extra CAs."""
    ctx = ssl.create_default_context()
    if not ctx.get_ca_certs():
        ctx.load_verify_locations(certifi.where())
    if extra is not None:
        ctx.load_verify_locations(cafile=str(extra))
    return ctx
