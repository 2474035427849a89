"""Entra stand-in driven by real msal (secret and certificate credentials) and raw requests."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.helpers.sandbox import SandboxProcess, start_sandbox

SCOPE = ["https://graph.microsoft.com/.default"]
READ_ONLY_APP = "e2ae45db-2954-4e51-a7e6-3f3a57ae4b50"
SALESFORCE = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    sb = start_sandbox(tmp_path_factory.mktemp("sandbox-entra"))
    yield sb
    sb.stop()


def msal_app(sb: SandboxProcess, client_id: str, credential: Any, **kw: Any) -> Any:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=sb.authority,
        http_client=sb.requests_session(),
        instance_discovery=False,
        **kw,
    )


def jwks_claims(sb: SandboxProcess, token: str) -> dict[str, Any]:
    session = sb.requests_session()
    config = session.get(f"{sb.authority}/v2.0/.well-known/openid-configuration").json()
    keys = session.get(config["jwks_uri"]).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == kid))
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience="https://graph.microsoft.com"
    )
    return claims


def test_discovery_document(sandbox: SandboxProcess) -> None:
    session = sandbox.requests_session()
    doc = session.get(f"{sandbox.authority}/v2.0/.well-known/openid-configuration").json()
    base = f"{sandbox.base_url}/{sandbox.tenant_id}"
    assert doc["issuer"] == f"{base}/v2.0"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    unknown = session.get(
        f"{sandbox.base_url}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration"
    )
    assert unknown.status_code == 400
    assert unknown.json()["error_codes"] == [90002]


def test_msal_secret_credential_and_token_claims(sandbox: SandboxProcess) -> None:
    app = msal_app(sandbox, sandbox.info["client_id"], sandbox.info["client_secret"])
    result = app.acquire_token_for_client(scopes=SCOPE)
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3600
    claims = jwks_claims(sandbox, result["access_token"])
    assert claims["tid"] == sandbox.tenant_id
    assert claims["appid"] == sandbox.info["client_id"]
    assert claims["roles"] == ["Synchronization.ReadWrite.All", "AuditLog.Read.All"]
    assert claims["exp"] - time.time() == pytest.approx(3600, abs=5)
    graph = sandbox.requests_session().get(
        f"{sandbox.graph_url}/servicePrincipals/{SALESFORCE}/synchronization/templates",
        headers={"Authorization": f"Bearer {result['access_token']}"},
    )
    assert graph.status_code == 200


def test_msal_certificate_credential_sha1_and_sha256(sandbox: SandboxProcess) -> None:
    cert_id = sandbox.info["cert_client_id"]
    result = msal_app(sandbox, cert_id, sandbox.cert_credential()).acquire_token_for_client(SCOPE)
    assert "access_token" in result, result
    assert jwks_claims(sandbox, result["access_token"])["appid"] == cert_id
    pem = Path(sandbox.info["cert_path"]).read_text()
    public = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
    credential = {"private_key": pem, "public_certificate": public}  # PS256 + x5t#S256
    result = msal_app(sandbox, cert_id, credential).acquire_token_for_client(SCOPE)
    assert "access_token" in result, result


def test_msal_instance_discovery_behaviour(sandbox: SandboxProcess) -> None:
    """Without instance_discovery=False msal first asks login.microsoftonline.com about the
    (unknown) sandbox host; offline that fails, so the flag is required."""
    seen: list[str] = []

    class Recording(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *a: Any, **kw: Any) -> Any:
            seen.append(str(url))
            if urlsplit(str(url)).hostname != "127.0.0.1":
                raise requests.ConnectionError("offline")
            return super().request(method, url, *a, **kw)

    session = Recording()
    session.trust_env = False
    session.verify = sandbox.ca_path
    with pytest.raises(requests.ConnectionError):
        msal.ConfidentialClientApplication(
            sandbox.info["client_id"],
            client_credential=sandbox.info["client_secret"],
            authority=sandbox.authority,
            http_client=session,
        )
    assert urlsplit(seen[0]).hostname == "login.microsoftonline.com"


def test_requests_ca_bundle_trap(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    naive = requests.Session()
    naive.verify = sandbox.ca_path  # silently replaced by REQUESTS_CA_BUNDLE
    with pytest.raises(requests.exceptions.SSLError):
        naive.get(f"{sandbox.base_url}/_sandbox/health")
    assert sandbox.requests_session().get(f"{sandbox.base_url}/_sandbox/health").ok


@pytest.mark.parametrize(
    ("client_id", "secret", "scope", "error", "code"),
    [
        ("adf03846-4f4d-4731-8425-4f4b2d8e0197", "wrong", SCOPE, "invalid_client", 7000215),
        ("0c0ffee0-0000-4000-8000-00000000abcd", "x", SCOPE, "unauthorized_client", 700016),
        ("adf03846-4f4d-4731-8425-4f4b2d8e0197", None, ["User.Read"], "invalid_scope", 1002012),
    ],
)
def test_msal_token_errors(
    sandbox: SandboxProcess,
    client_id: str,
    secret: str | None,
    scope: list[str],
    error: str,
    code: int,
) -> None:
    app = msal_app(sandbox, client_id, secret or sandbox.info["client_secret"])
    result = app.acquire_token_for_client(scopes=scope)
    assert result.get("error") == error, result
    assert result["error_codes"] == [code]
    assert result["error_description"].startswith(f"AADSTS{code}:")


def _token_post(sb: SandboxProcess, form: dict[str, str]) -> requests.Response:
    return sb.requests_session().post(f"{sb.authority}/oauth2/v2.0/token", data=form)


def _assertion(sb: SandboxProcess, key: Any, **overrides: Any) -> str:
    cert = x509.load_pem_x509_certificate(Path(sb.info["cert_path"]).read_bytes())
    x5t = jwt.utils.base64url_encode(cert.fingerprint(hashes.SHA1())).decode()  # noqa: S303
    now = int(time.time())
    claims = {
        "aud": f"{sb.authority}/oauth2/v2.0/token",
        "iss": sb.info["cert_client_id"],
        "sub": sb.info["cert_client_id"],
        "exp": now + 300,
        "nbf": now,
        "jti": str(uuid.uuid4()),
        **overrides,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"x5t": x5t})


@pytest.mark.parametrize(
    ("overrides", "use_other_key", "code"),
    [
        ({}, False, None),
        ({"aud": "https://login.microsoftonline.com/x/oauth2/v2.0/token"}, False, 700027),
        ({"sub": "someone-else"}, False, 700027),
        ({"exp": int(time.time()) - 10}, False, 700024),
        ({}, True, 700027),
    ],
)
def test_client_assertion_checks(
    sandbox: SandboxProcess, overrides: dict[str, Any], use_other_key: bool, code: int | None
) -> None:
    pem = Path(sandbox.info["cert_path"]).read_bytes()
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if use_other_key
        else serialization.load_pem_private_key(pem, password=None)
    )
    form = {
        "grant_type": "client_credentials",
        "client_id": sandbox.info["cert_client_id"],
        "scope": f"{sandbox.base_url}/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _assertion(sandbox, key, **overrides),
    }
    resp = _token_post(sandbox, form)
    if code is None:
        assert resp.status_code == 200
        assert resp.json()["token_type"] == "Bearer"
    else:
        assert resp.status_code == 401
        body = resp.json()
        assert body["error"] == "invalid_client"
        assert body["error_codes"] == [code]
        assert set(body) >= {"error", "error_description", "error_codes", "trace_id"}


def test_raw_token_request_errors(sandbox: SandboxProcess) -> None:
    base = {"client_id": sandbox.info["client_id"], "client_secret": sandbox.info["client_secret"]}
    resp = _token_post(sandbox, {**base, "grant_type": "password", "scope": SCOPE[0]})
    assert resp.status_code == 400
    assert resp.json()["error"] == "unsupported_grant_type"
    two = f"{SCOPE[0]} https://other/.default"
    resp = _token_post(sandbox, {**base, "grant_type": "client_credentials", "scope": two})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_scope"
    resp = _token_post(sandbox, {"grant_type": "client_credentials", "scope": SCOPE[0]})
    assert resp.status_code == 400
    assert resp.json()["error_codes"] == [900144]


def test_read_only_app_token_gets_graphs_401_on_writes(sandbox: SandboxProcess) -> None:
    """Real Graph answers a sync call without a permission 401 UnknownError, empty message."""
    form = {
        "grant_type": "client_credentials",
        "client_id": READ_ONLY_APP,
        "client_secret": "sandbox-readonly-secret-5Kq2xP9rLm",
        "scope": SCOPE[0],
    }
    token = _token_post(sandbox, form).json()["access_token"]
    resp = sandbox.requests_session().post(
        f"{sandbox.graph_url}/servicePrincipals/{SALESFORCE}/synchronization/jobs",
        json={"templateId": "salesforce"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "UnknownError"
    assert resp.json()["error"]["message"] == ""


def test_unregistered_certificate_is_refused(sandbox: SandboxProcess, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    thumb = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303
    app = msal_app(
        sandbox, sandbox.info["cert_client_id"], {"private_key": pem, "thumbprint": thumb}
    )
    result = app.acquire_token_for_client(scopes=SCOPE)
    assert result.get("error") == "invalid_client"
    assert result["error_codes"] == [700027]
