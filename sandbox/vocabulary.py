"""The synchronization vocabulary the sandbox checks requests against: the
synchronizationSecret key names Graph accepts, the ones it masks when read back, the restart
scopes; and the markers a secret value may carry to make the sandbox reject it or quarantine
the job (the fault-injection hooks of tests/helpers/tenant_admin.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.models import bad_request

REJECT_MARKER = "sandbox:reject"
QUARANTINE_MARKER = "sandbox:quarantine"
SECRET_KEYS = frozenset(
    [
        "None",
        "UserName",
        "Password",
        "SecretToken",
        "AppKey",
        "BaseAddress",
        "ClientIdentifier",
        "ClientSecret",
        "SingleSignOnType",
        "Sandbox",
        "Url",
        "Domain",
        "ConsumerKey",
        "ConsumerSecret",
        "TokenKey",
        "TokenExpiration",
        "Oauth2AccessToken",
        "Oauth2AccessTokenCreationTime",
        "Oauth2RefreshToken",
        "SyncAll",
        "InstanceName",
        "Oauth2ClientId",
        "Oauth2ClientSecret",
        "CompanyId",
        "UpdateKeyOnSoftDelete",
        "SynchronizationSchedule",
        "SystemOfRecord",
        "SandboxName",
        "EnforceDomain",
        "SyncNotificationSettings",
        "SkipOutOfScopeDeletions",
        "Oauth2AuthorizationCode",
        "Oauth2RedirectUri",
        "ApplicationTemplateIdentifier",
        "Oauth2TokenExchangeUri",
        "Oauth2AuthorizationUri",
        "AuthenticationType",
        "Server",
        "PerformInboundEntitlementGrants",
        "HardDeletesEnabled",
        "SyncAgentCompatibilityKey",
        "SyncAgentADContainer",
        "ValidateDomain",
        "TestReferences",
        "ConnectionString",
    ]
)
SENSITIVE_KEYS = frozenset(
    [
        "Password",
        "SecretToken",
        "AppKey",
        "ClientSecret",
        "ConsumerSecret",
        "TokenKey",
        "Oauth2AccessToken",
        "Oauth2RefreshToken",
        "Oauth2ClientSecret",
        "Oauth2AuthorizationCode",
        "ConnectionString",
    ]
)
RESET_SCOPES = frozenset(
    [
        "None",
        "ConnectorDataStore",
        "Escrows",
        "Watermark",
        "QuarantineState",
        "Full",
        "ForceDeletes",
    ]
)


def check_keys(keys: Iterable[str]) -> None:
    """A 400 naming the keys that are not synchronizationSecret names."""
    unknown = sorted({k for k in keys if k not in SECRET_KEYS})
    if unknown:
        raise bad_request(f"Invalid synchronizationSecret key(s): {', '.join(unknown)}.")
