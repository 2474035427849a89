"""The client commands: ``provisioner submit | status | list | retry | cancel`` and the lifecycle
actions (``pause``, ``resume``, ``restart``, ``deprovision``, ``rotate``), each one
call to the API (:mod:`service.cli.client`), the step view (:mod:`service.cli.render`) to
follow it.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

from service.cli.client import ApiError, Client, add_client_arguments
from service.cli.render import render, watch
from service.core.models import State


def _submit(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body: dict[str, Any] = {"servicePrincipalId": args.sp, "start": not args.no_start}
    if args.template:
        body["templateId"] = args.template
    if args.external_reference:
        body["externalReference"] = args.external_reference
    body.update(smoke_test(args))
    return _post(client, args, out, body, "")


def _post(
    client: Client, args: argparse.Namespace, out: TextIO, body: dict[str, Any], note: str
) -> int:
    """POST a request, say whether it was accepted, and with ``--wait`` follow it to its end
    (exit 1 unless it succeeded)."""
    status, record = client.call("POST", "/v1/provisioning-requests", body)
    verb = "accepted" if status == 202 else "already in flight"
    out.write(f"{verb}: {record['id']}{note}\n")
    if args.wait:
        record = watch(client, record["id"], out)
        return 0 if record["state"] == "succeeded" else 1
    return 0


def _status(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.watch:
        record = watch(client, args.id, out)
    else:
        _, record = client.call("GET", f"/v1/provisioning-requests/{args.id}")
        out.write("\n".join(render(record)) + "\n")
    return 1 if record["state"] == "failed" else 0


def _list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    pairs = (
        ("state", args.state),
        ("servicePrincipalId", args.sp),
        ("caller", args.caller),
    )
    query = urllib.parse.urlencode([(k, v) for k, v in pairs if v])
    _, page = client.call("GET", "/v1/provisioning-requests" + (f"?{query}" if query else ""))
    for rec in page["items"]:
        code = rec["error"]["code"] if rec.get("error") else ""
        out.write(
            f"{rec['id']}  {rec['state']:<9}  {rec['servicePrincipalId']}  "
            f"{rec.get('templateId') or '-':<20} {rec.get('caller') or '-':<20} {code}\n"
        )
    return 0


def _action(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = action_body(args)
    return _post(client, args, out, body, f" ({body['action']})")


def _act(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    _, record = client.call("POST", f"/v1/provisioning-requests/{args.id}/{args.command}")
    out.write(f"{record['id']}: {record['state']}\n")
    return 0


_COMMANDS: dict[str, Callable[[Client, argparse.Namespace, TextIO], int]] = {
    "submit": _submit,
    "status": _status,
    "list": _list,
    "retry": _act,
    "cancel": _act,
}


def run_client(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Dispatch one client command; 0 on success, 1 when the request ended failed, 2 on errors."""
    command = _COMMANDS.get(args.command) or (_action if args.command in ACTION_COMMANDS else None)
    if command is None:
        raise ValueError(f"not a client command: {args.command}")
    try:
        return command(Client(args.api_url, args.api_key), args, out)
    except ApiError as e:
        print(f"provisioner: {e}", file=sys.stderr)
        return 2


def add_client_commands(sub: Any) -> None:
    """Register submit / status / list / retry / cancel on the CLI's subparsers."""
    submit = sub.add_parser("submit", help="ask the API to provision an app")
    submit.add_argument("--sp", required=True, help="service principal object id")
    submit.add_argument("--template", help="synchronization template id")
    submit.add_argument("--external-reference", help="ticket id to keep with the request")
    submit.add_argument("--no-start", action="store_true", help="create the job, do not start it")
    submit.add_argument("--wait", action="store_true", help="follow the request until it ends")
    add_smoke_arguments(submit)
    status = sub.add_parser("status", help="show a request's steps")
    status.add_argument("id")
    status.add_argument("--watch", action="store_true", help="update live until it ends")
    listing = sub.add_parser("list", help="list requests")
    listing.add_argument("--state", choices=[s.value for s in State])
    listing.add_argument("--sp", help="only this service principal")
    listing.add_argument(
        "--caller", help="only this caller's requests (another caller's needs 'operator')"
    )
    for name in ("retry", "cancel"):
        cmd = sub.add_parser(name, help=f"{name} a request")
        cmd.add_argument("id")
    for parser in (submit, status, listing, sub.choices["retry"], sub.choices["cancel"]):
        add_client_arguments(parser)
    add_action_commands(sub)


# Lifecycle actions (issue 12) -----------------------------------------------------------------
#: command -> the request's ``action``
ACTION_COMMANDS = {
    "pause": "pause",
    "resume": "resume",
    "restart": "restart",
    "deprovision": "deprovision",
    "rotate": "rotateCredentials",
}


def action_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request body of ``provisioner pause|resume|restart|deprovision|rotate``."""
    body: dict[str, Any] = {"servicePrincipalId": args.sp, "action": ACTION_COMMANDS[args.command]}
    if args.template:
        body["templateId"] = args.template
    if args.external_reference:
        body["externalReference"] = args.external_reference
    if getattr(args, "reset_scope", None):
        body["resetScope"] = [f.strip() for f in args.reset_scope.split(",") if f.strip()]
    body.update(smoke_test(args))
    if args.command == "rotate":
        body["credentials"] = _read_credentials(args.credentials)
    return body


def smoke_test(args: argparse.Namespace) -> dict[str, Any]:
    """``{"smokeTest": ...}`` from ``--smoke-user ID [--smoke-type User|Group]``, else ``{}``."""
    subject, kind = getattr(args, "smoke_user", None), getattr(args, "smoke_type", None)
    if not subject:
        if kind:
            raise ApiError("--smoke-type needs --smoke-user (the object id to provision)")
        return {}
    return {"smokeTest": {"subjectId": subject, "objectTypeName": kind or "User"}}


def add_smoke_arguments(parser: argparse.ArgumentParser) -> None:
    """``--smoke-user`` and ``--smoke-type``: after start, provision one real user (or group)
    on demand and end ``failed`` (``SmokeTestFailed``) when Graph reports a failed step."""
    parser.add_argument(
        "--smoke-user",
        metavar="OBJECT_ID",
        help="after start, provision this user (or group, --smoke-type Group) on demand",
    )
    parser.add_argument(
        "--smoke-type",
        choices=("User", "Group"),
        help="what --smoke-user names (default User)",
    )


def _read_credentials(path: str) -> list[dict[str, str]]:
    """``[{"key", "value"}]`` from a JSON file (``-``: stdin), never from the command line."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    try:
        data = json.loads(text)
    except ValueError:
        raise ApiError(f"{path}: not JSON") from None
    if isinstance(data, dict):
        data = [{"key": k, "value": v} for k, v in data.items()]
    if not isinstance(data, list):
        raise ApiError(f"{path}: expected [{{key, value}}, ...] or {{key: value}}")
    return data


def add_action_commands(sub: Any) -> None:
    """Register pause / resume / restart / deprovision / rotate."""
    helps = {
        "pause": "pause a principal's synchronization job",
        "resume": "start a paused job again (verified like provisioning)",
        "restart": "restart a job, optionally resetting state (--reset-scope)",
        "deprovision": "delete the job (accounts already in the app stay)",
        "rotate": "validate and save new credentials; lift a quarantine",
    }
    for name, text in helps.items():
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--sp", required=True, help="service principal object id")
        cmd.add_argument("--template", help="synchronization template id (default: its job)")
        cmd.add_argument("--external-reference", help="ticket id to keep with the request")
        cmd.add_argument("--wait", action="store_true", help="follow the request until it ends")
        if name == "restart":
            cmd.add_argument(
                "--reset-scope",
                help="comma-separated: Escrows,Watermark,QuarantineState,Full,ForceDeletes",
            )
        if name in {"resume", "restart"}:
            add_smoke_arguments(cmd)
        if name == "rotate":
            cmd.add_argument(
                "--credentials",
                required=True,
                help="JSON file of the new credentials: {key: value} or [{key, value}]; - = stdin",
            )
        add_client_arguments(cmd)
