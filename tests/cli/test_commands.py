"""The client commands as the ``provisioner`` parser reads them: the request body of each action
and credentials read from a file (never from the command line), and an unreachable API as a
message and exit code 2."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from service.cli.client import ApiError
from service.cli.commands import action_body, run_client
from service.cli.main import _parser
from tests.api.test_routes import API_KEY
from tests.helpers.redis_server import free_port

SP = "15331f0e-bdc6-41e2-afa0-a4c9abfe90b3"
USER = "0a1b2c3d-0000-4000-8000-000000000001"


def _body(*argv: str) -> dict[str, object]:
    return action_body(_parser().parse_args(list(argv)))


def test_each_action_command_names_its_action() -> None:
    assert _body("pause", "--sp", SP) == {"servicePrincipalId": SP, "action": "pause"}
    restart = _body(
        "restart", "--sp", SP, "--template", "scim", "--reset-scope", "Watermark, Escrows,"
    )
    assert restart["action"] == "restart"
    assert restart["templateId"] == "scim"
    assert restart["resetScope"] == ["Watermark", "Escrows"]
    assert _body("resume", "--sp", SP, "--smoke-user", USER)["smokeTest"] == {
        "subjectId": USER,
        "objectTypeName": "User",
    }


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"SecretToken": "s"}),
        json.dumps([{"key": "SecretToken", "value": "s"}]),
    ],
)
def test_rotate_reads_credentials_from_a_file_in_either_form(tmp_path: Path, content: str) -> None:
    path = tmp_path / "creds.json"
    path.write_text(content)
    body = _body("rotate", "--sp", SP, "--credentials", str(path))
    assert body["action"] == "rotateCredentials"
    assert body["credentials"] == [{"key": "SecretToken", "value": "s"}]


@pytest.mark.parametrize(("content", "says"), [("not json", "not JSON"), ("42", "expected")])
def test_a_credentials_file_of_another_shape_is_refused(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "creds.json"
    path.write_text(content)
    with pytest.raises(ApiError, match=says):
        _body("rotate", "--sp", SP, "--credentials", str(path))


def test_an_unreachable_api_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = _parser().parse_args(["status", "rid", "--api-url", url, "--api-key", "k"])
    assert run_client(args) == 2
    assert "cannot reach the API" in capsys.readouterr().err


async def test_submit_says_accepted_then_already_in_flight(base: str) -> None:
    argv = ["submit", "--sp", SP, "--api-url", base, "--api-key", API_KEY]
    out = io.StringIO()  # the API in this process logs to stdout
    for _ in range(2):
        assert await asyncio.to_thread(run_client, _parser().parse_args(argv), out) == 0
    first, second = out.getvalue().splitlines()
    assert first.startswith("accepted: ")
    assert second == "already in flight: " + first.removeprefix("accepted: ")


async def test_an_action_names_itself_when_accepted(base: str) -> None:
    argv = ["pause", "--sp", SP, "--api-url", base, "--api-key", API_KEY]
    out = io.StringIO()
    assert await asyncio.to_thread(run_client, _parser().parse_args(argv), out) == 0
    assert out.getvalue().startswith("accepted: ")
    assert out.getvalue().endswith(" (pause)\n")
