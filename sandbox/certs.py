"""Key material for the sandbox, persisted in the state directory and reused when present.

Files in ``state_dir``:

- ``ca.pem``: the CA certificate clients must trust (the only file to hand to a client).
- ``server.pem``: the server's private key and certificate chain (127.0.0.1, ::1, localhost).
- ``signing-key.pem``: the RSA key that signs access tokens (published through the JWKS).
- ``client-cert.pem`` (and ``client-cert-<clientId>.pem`` for further certificate apps): private
  key + self-signed certificate of a certificate-credential application.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SERVER_IDENTITIES = ("127.0.0.1", "::1", "localhost")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ServerTLS:
    ca_path: Path
    server_pem_path: Path

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_pem_path))
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this sandbox's CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))


@dataclass(frozen=True)
class ClientCertificate:
    path: Path
    certificate: x509.Certificate

    @property
    def sha1_thumbprint(self) -> str:
        """Hex SHA-1 of the DER certificate, as msal's ``thumbprint`` expects."""
        return self.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303

    @property
    def x5t(self) -> str:
        return _b64url(self.certificate.fingerprint(hashes.SHA1()))  # noqa: S303

    @property
    def x5t_s256(self) -> str:
        return _b64url(self.certificate.fingerprint(hashes.SHA256()))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ensure_server_tls(state_dir: Path) -> ServerTLS:
    ca_path = state_dir / "ca.pem"
    server_path = state_dir / "server.pem"
    if not (ca_path.exists() and server_path.exists()):
        ca = trustme.CA(organization_name="Provisioner sandbox")
        leaf = ca.issue_cert(*SERVER_IDENTITIES, common_name="sandbox.localhost")
        write_atomic(server_path, leaf.private_key_and_cert_chain_pem.bytes())
        write_atomic(ca_path, ca.cert_pem.bytes(), mode=0o644)
    return ServerTLS(ca_path=ca_path.resolve(), server_pem_path=server_path.resolve())


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_signing_key(state_dir: Path) -> rsa.RSAPrivateKey:
    path = state_dir / "signing-key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    key = _new_rsa_key()
    write_atomic(path, _key_pem(key))
    return key


def client_cert_path(state_dir: Path, client_id: str, *, first: bool) -> Path:
    return state_dir / ("client-cert.pem" if first else f"client-cert-{client_id}.pem")


def ensure_client_certificate(path: Path, client_id: str) -> ClientCertificate:
    """Load (or create) a PEM file holding an RSA private key and a self-signed certificate."""
    if path.exists():
        return ClientCertificate(path=path.resolve(), certificate=load_certificate(path))
    key = _new_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sandbox-app-{client_id}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    write_atomic(path, _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM))
    return ClientCertificate(path=path.resolve(), certificate=cert)


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate in a PEM file (which may also hold a private key)."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def key_id(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(der).digest()[:20])
