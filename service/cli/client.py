"""The API's command-line client over HTTP: the API URL and key, one call, an error as the
problem's own words.

It talks to a running API like a portal would. The API URL and key come from ``--api-url`` /
``--api-key`` or ``PROVISIONER_API_URL`` / ``PROVISIONER_API_KEY`` (the caller's own key, not the
server's hashed ``PROVISIONER_API_KEYS``). The commands are in :mod:`service.cli.commands`.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiError(Exception):
    """The API answered with a problem (or not at all); the message is for the terminal."""


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every client command takes."""
    parser.add_argument(
        "--api-url", default=os.environ.get("PROVISIONER_API_URL", "http://127.0.0.1:8080")
    )
    parser.add_argument("--api-key", default=os.environ.get("PROVISIONER_API_KEY"))


class Client:
    """A small synchronous client of the intake API."""

    def __init__(self, api_url: str, api_key: str | None) -> None:
        if not api_key:
            raise ApiError("no API key: pass --api-key or set PROVISIONER_API_KEY")
        self._base = api_url.rstrip("/")
        self._key = api_key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; returns (status, JSON body) or raises ApiError with the problem."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the operator's own API URL
            self._base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise ApiError(_problem_text(e)) from e
        except OSError as e:
            raise ApiError(f"cannot reach the API at {self._base}: {e}") from e


def _problem_text(error: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(error.read())
    except ValueError:
        return f"HTTP {error.code}"
    lines = [f"{problem.get('status', error.code)} {problem.get('title', '')}: "
             f"{problem.get('detail', '')}".rstrip(": ")]  # fmt: skip
    lines += [f"  {e.get('field')}: {e.get('reason')}" for e in problem.get("errors", [])]
    return "\n".join(lines)
