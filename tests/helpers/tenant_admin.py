"""An Entra admin acting on the sandbox tenant through Graph itself (not the control plane):
pausing, deleting or breaking a job the service already started, as a person in the portal
would, so the health watch has something real to notice."""

from __future__ import annotations

from typing import Any

import aiohttp

from sandbox.vocabulary import QUARANTINE_MARKER
from tests.helpers.sandbox import SandboxProcess


class TenantAdmin:
    """Graph calls as the sandbox's secret-credential app."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox

    async def _token(self, session: aiohttp.ClientSession) -> str:
        info = self.sandbox.info
        form = {
            "grant_type": "client_credentials",
            "client_id": str(info["client_id"]),
            "client_secret": str(info["client_secret"]),
            "scope": "https://graph.microsoft.com/.default",
        }
        url = f"{self.sandbox.authority}/oauth2/v2.0/token"
        async with session.post(url, data=form) as resp:
            body = await resp.json()
        return str(body["access_token"])

    async def call(self, method: str, path: str, body: Any = None) -> int:
        connector = aiohttp.TCPConnector(ssl=self.sandbox.ssl_context())
        async with aiohttp.ClientSession(connector=connector) as session:
            headers = {"Authorization": f"Bearer {await self._token(session)}"}
            url = f"{self.sandbox.graph_url}{path}"
            async with session.request(method, url, json=body, headers=headers) as resp:
                await resp.read()
                return resp.status

    @staticmethod
    def _job(sp: str, job_id: str) -> str:
        return f"/servicePrincipals/{sp}/synchronization/jobs/{job_id}"

    async def pause(self, sp: str, job_id: str) -> None:
        assert await self.call("POST", self._job(sp, job_id) + "/pause") == 204

    async def delete(self, sp: str, job_id: str) -> None:
        assert await self.call("DELETE", self._job(sp, job_id)) == 204

    async def break_credentials(self, sp: str, job_id: str) -> None:
        """Save credentials the target system rejects and restart the job: the sandbox then
        quarantines it once its activation delay has passed, as Graph does after failed runs."""
        secrets = {"value": [{"key": "SecretToken", "value": f"rotated-{QUARANTINE_MARKER}"}]}
        assert (
            await self.call("PUT", f"/servicePrincipals/{sp}/synchronization/secrets", secrets)
            == 204
        )
        assert await self.call("POST", self._job(sp, job_id) + "/restart", {}) == 204
