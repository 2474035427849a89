"""The sandbox's Entra ID client side: registered applications, how a client authenticates at
the token endpoint (a secret, or a certificate's signed assertion, as Entra checks them) and
the AADSTS-shaped errors it answers with.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Application:
    client_id: str
    display_name: str
    secret: str | None
    certificate: x509.Certificate | None
    roles: tuple[str, ...]


class AadError(Exception):
    """An AADSTS answer from the token endpoint."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self, correlation_id: str) -> dict[str, Any]:
        trace = str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description}\r\nTrace ID: {trace}"
            f"\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


class InvalidToken(Exception):
    """An access token Graph must refuse (401 InvalidAuthenticationToken)."""


def _b64url_sha(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return base64.urlsafe_b64encode(cert.fingerprint(algorithm)).rstrip(b"=").decode()


def authenticate(app: Application, form: Mapping[str, str], endpoint: str) -> str:
    """The client's authentication method (``appidacr``: 1 secret, 2 certificate), else AadError."""
    if "client_assertion" in form:
        _check_assertion(app, form, endpoint)
        return "2"
    secret = form.get("client_secret")
    if secret is None:
        raise AadError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the "
            "following parameter: 'client_assertion' or 'client_secret'.",
        )
    if app.secret is None or not hmac.compare_digest(secret, app.secret):
        raise AadError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. "
            "Ensure the secret being sent in the request is the client secret "
            f"value, not the client secret ID, for a secret added to app "
            f"'{app.client_id}'.",
        )
    return "1"


def _check_assertion(app: Application, form: Mapping[str, str], endpoint: str) -> None:
    def bad(reason: str) -> AadError:
        return AadError(
            401,
            "invalid_client",
            700027,
            f"Client assertion failed signature validation. [Reason - {reason}]",
        )

    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise bad("client_assertion_type must be " + ASSERTION_TYPE)
    assertion = form["client_assertion"]
    cert = app.certificate
    if cert is None:
        raise bad("The key was not found. No certificate is registered for this app.")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise bad(f"The assertion is not a JWT: {exc}") from exc
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        raise bad(f"Unsupported algorithm {alg!r}; use RS256 or PS256.")
    x5t, x5t256 = (str(header.get(k) or "").rstrip("=") for k in ("x5t", "x5t#S256"))
    if (x5t and x5t != _b64url_sha(cert, hashes.SHA1())) or (  # noqa: S303
        x5t256 and x5t256 != _b64url_sha(cert, hashes.SHA256())
    ):
        raise bad("The key was not found. The thumbprint does not match the registered key.")
    try:
        claims = jwt.decode(
            assertion,
            cert.public_key(),  # type: ignore[arg-type]
            algorithms=[alg],
            audience=endpoint,
            options={"require": ["exp", "aud", "iss", "sub"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AadError(
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ) from exc
    except jwt.PyJWTError as exc:
        raise bad(str(exc)) from exc
    if not (claims["iss"].lower() == claims["sub"].lower() == app.client_id):
        raise bad("iss and sub must both be the client id.")


def missing(name: str) -> AadError:
    return AadError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def resource_of(scope: str | None) -> str:
    if not scope:
        raise missing("scope")
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise AadError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is "
            "not valid. Client credential flows must have a scope value with "
            "/.default suffixed to the resource identifier (application ID URI).",
        )
    return scopes[0].removesuffix("/.default")


def basic_credentials(header: str) -> dict[str, str]:
    try:
        raw = base64.b64decode(header.split(None, 1)[1]).decode()
    except (binascii.Error, UnicodeDecodeError, IndexError):
        return {}
    client_id, _, secret = raw.partition(":")
    return {"client_id": client_id, "client_secret": secret}
