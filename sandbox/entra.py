"""Entra ID v2.0 stand-in: discovery, JWKS, client-credentials token endpoint, token checks.

How a client authenticates, and the AADSTS errors, are in :mod:`sandbox.aad`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from sandbox.aad import (
    AadError,
    Application,
    InvalidToken,
    authenticate,
    basic_credentials,
    missing,
    resource_of,
)
from sandbox.certs import key_id

__all__ = [
    "READ_ROLES",
    "TOKENS_KEY",
    "WRITE_ROLES",
    "AadError",
    "Application",
    "InvalidToken",
    "TokenService",
    "has_role",
    "owned_only",
]

OWNED_BY = "Application.ReadWrite.OwnedBy"
# Application permissions the synchronization API accepts for every principal (Graph's table,
# plus the older docs' and Terraform's): OwnedBy reaches only the principals the app owns.
TENANT_WIDE_WRITE = frozenset(
    {"Synchronization.ReadWrite.All", "Application.ReadWrite.All", "Directory.ReadWrite.All"}
)
WRITE_ROLES = TENANT_WIDE_WRITE | {OWNED_BY}
READ_ROLES = WRITE_ROLES | {"Synchronization.Read.All"}


class TokenService:
    def __init__(
        self,
        *,
        tenant_id: str,
        applications: Mapping[str, Application],
        signing_key: rsa.RSAPrivateKey,
        lifetime_s: int,
        wall_clock: Callable[[], float],
    ) -> None:
        self.tenant_id = tenant_id
        self.applications = dict(applications)
        self._key = signing_key
        self._kid = key_id(signing_key)
        self.lifetime_s = lifetime_s
        self._now = wall_clock
        # The fault profile's ``token_roles`` (None: each application's own roles).
        self.roles_override: Callable[[], list[str] | None] = lambda: None

    # -- documents --------------------------------------------------------------------------
    def discovery(self, origin: str) -> dict[str, Any]:
        base = f"{origin}/{self.tenant_id}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{origin}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "roles", "appid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "sandbox.local",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": origin.removeprefix("https://"),
        }

    def jwks(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self._kid, "use": "sig", "alg": "RS256"}]}

    # -- token endpoint ---------------------------------------------------------------------
    def issue(
        self, tenant: str, form: Mapping[str, str], origin: str, authorization: str | None
    ) -> dict[str, Any]:
        if tenant.lower() != self.tenant_id:
            raise AadError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure "
                "you have the correct tenant ID and are signing into the correct cloud.",
            )
        form = dict(form)
        if authorization and authorization.lower().startswith("basic "):
            form.update(basic_credentials(authorization))
        if form.get("grant_type") != "client_credentials":
            raise AadError(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an "
                "unsupported grant type. Only client_credentials is supported.",
            )
        client_id = form.get("client_id", "").lower()
        if not client_id:
            raise missing("client_id")
        app = self.applications.get(client_id)
        if app is None:
            raise AadError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier "
                f"'{client_id}' was not found in the directory '{self.tenant_id}'.",
            )
        token_endpoint = f"{origin}/{self.tenant_id}/oauth2/v2.0/token"
        method = authenticate(app, form, token_endpoint)
        resource = resource_of(form.get("scope"))
        return self._mint(app, resource, origin, method)

    def _mint(self, app: Application, resource: str, origin: str, method: str) -> dict[str, Any]:
        now = int(self._now())
        oid = str(uuid.uuid5(uuid.UUID(app.client_id), "servicePrincipal"))
        claims = {
            "aud": resource,
            "iss": f"{origin}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_s,
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "azp": app.client_id,
            "appidacr": method,
            "idtyp": "app",
            "oid": oid,
            "sub": oid,
            "roles": list(self._roles(app)),
            "tid": self.tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})
        return {
            "token_type": "Bearer",
            "expires_in": self.lifetime_s,
            "ext_expires_in": self.lifetime_s,
            "access_token": token,
        }

    def _roles(self, app: Application) -> tuple[str, ...]:
        override = self.roles_override()
        return app.roles if override is None else tuple(override)

    # -- Graph side -------------------------------------------------------------------------
    def verify(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid bearer token, else InvalidToken with Graph's message."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise InvalidToken("Access token is empty.")
        token = authorization[7:].strip()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "tid"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("Lifetime validation failed, the token is expired.") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("Access token validation failure. Invalid signature.") from exc
        if str(claims["tid"]).lower() != self.tenant_id:
            raise InvalidToken("Access token validation failure. Invalid tenant.")
        return claims


def has_role(claims: Mapping[str, Any], *, write: bool) -> bool:
    roles = set(claims.get("roles") or ())
    return bool(roles & (WRITE_ROLES if write else READ_ROLES))


def owned_only(claims: Mapping[str, Any], *, write: bool) -> bool:
    """True when the token reaches principals only through Application.ReadWrite.OwnedBy."""
    roles = set(claims.get("roles") or ())
    wide = TENANT_WIDE_WRITE if write else TENANT_WIDE_WRITE | {"Synchronization.Read.All"}
    return OWNED_BY in roles and not roles & wide


TOKENS_KEY = web.AppKey("sandbox_tokens", TokenService)


def _origin(request: web.Request) -> str:
    return f"https://{request.host}"


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store, no-cache"})


def _aad_error(request: web.Request, err: AadError) -> web.Response:
    correlation = request.headers.get("client-request-id") or str(uuid.uuid4())
    return _json(err.body(correlation), status=err.status)


async def discovery_handler(request: web.Request) -> web.Response:
    tokens = request.app[TOKENS_KEY]
    tenant = request.match_info["tenant"]
    if tenant.lower() != tokens.tenant_id:
        return _aad_error(
            request, AadError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        )
    return _json(tokens.discovery(_origin(request)))


async def jwks_handler(request: web.Request) -> web.Response:
    return _json(request.app[TOKENS_KEY].jwks())


async def token_handler(request: web.Request) -> web.Response:
    tokens = request.app[TOKENS_KEY]
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    try:
        body = tokens.issue(
            request.match_info["tenant"],
            form,
            _origin(request),
            request.headers.get("Authorization"),
        )
    except AadError as err:
        return _aad_error(request, err)
    return _json(body)


def token_fault_response(request: web.Request, status: int) -> web.Response:
    """An injected token-endpoint failure, AADSTS-shaped."""
    error = "temporarily_unavailable" if status in (429, 503, 504) else "server_error"
    err = AadError(
        status,
        error,
        50196 if status == 429 else 90033,
        "The service is temporarily unavailable (injected by the sandbox).",
    )
    return _aad_error(request, err)
