"""``provisioner``: the one command that runs every part of the service.

::

    provisioner api [--host H] [--port P]    the intake API
    provisioner worker [--check [--name N] [--live]]  an arq worker (--check: exit 0 if one
                                             (N) is alive and may call Graph; --live: alive)
    provisioner sandbox [options]            the local Graph + Entra simulator
    provisioner up [--port P]                everything locally, on the sandbox without a tenant
    provisioner keys new NAME                a new API key and its PROVISIONER_API_KEYS entry
    provisioner keys encryption              a new PROVISIONER_ENCRYPTION_KEY value
    provisioner submit --sp ID [--wait]      ask a running API to provision an app
        [--smoke-user OID [--smoke-type User|Group]]  then provision one user on demand
    provisioner status ID [--watch]          a request's steps, live with --watch
    provisioner list [--state S] [--caller C] requests, newest first (every caller's for operators)
    provisioner retry ID | cancel ID         re-drive a failed request, or stop one
    provisioner pause|resume|restart|deprovision|rotate --sp ID [--wait]
                                             act on a principal's existing job (resume and
                                             restart take --smoke-user / --smoke-type too)

Start-up problems (a bad setting, Redis or the authority unreachable) end the process with one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import secrets
import sys
from collections.abc import Sequence

from service.cli.commands import add_client_commands, run_client
from service.core.config_values import hash_api_key
from service.core.crypto import new_encryption_key
from service.core.errors import ProvisionerError
from service.core.settings import load_settings

CLIENT_COMMANDS = frozenset(
    {"submit", "status", "list", "retry", "cancel", "pause", "resume", "restart"}
    | {"deprovision", "rotate"}
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provisioner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="run the intake API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)

    worker = sub.add_parser("worker", help="run an arq worker")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 when a worker on this queue is alive"
    )
    worker.add_argument(
        "--name",
        help="with --check: only this worker (its PROVISIONER_WORKER_NAME) counts",
    )
    worker.add_argument(
        "--live",
        action="store_true",
        help="with --check: the heartbeat only, not the Graph permissions (a liveness probe)",
    )

    sub.add_parser("sandbox", help="run the Graph + Entra simulator", add_help=False)

    up = sub.add_parser("up", help="run Redis, the sandbox, one API and one worker locally")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--state-dir", default=".state")

    add_client_commands(sub)

    keys = sub.add_parser("keys", help="make keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="a new API key for a caller")
    new.add_argument("name")
    keys_sub.add_parser("encryption", help="a new credentials encryption key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``provisioner`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["sandbox"]:
        sandbox_cli = importlib.import_module("sandbox.cli")
        return int(sandbox_cli.main(args_list[1:]))
    args = _parser().parse_args(args_list)
    try:
        return _dispatch(args)
    except ProvisionerError as e:
        print(f"provisioner: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _keys(args: argparse.Namespace) -> int:
    """``keys encryption`` prints a new encryption key; ``keys new NAME`` a new API key."""
    if args.keys_command == "encryption":
        print(new_encryption_key())
        return 0
    if not args.name.replace("-", "").replace("_", "").isalnum():
        print("provisioner: NAME may hold letters, digits, '-' and '_'", file=sys.stderr)
        return 2
    key = f"pk_{secrets.token_urlsafe(32)}"
    print(f"API key for {args.name} (shown once): {key}")
    print(f"PROVISIONER_API_KEYS entry: {args.name}:{hash_api_key(key)}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in CLIENT_COMMANDS:
        return run_client(args)
    if args.command == "keys":
        return _keys(args)
    if args.command == "up":
        from service.cli.up import run_up

        return run_up(host=args.host, port=args.port, state_dir=args.state_dir)
    settings = load_settings()
    if args.command == "api":
        from service.api.app import run_api

        run_api(settings, args.host, args.port)
        return 0
    # The worker lives in workers/, which imports service/ and never the reverse.
    worker_main = importlib.import_module("workers.main")
    if args.check:
        return int(asyncio.run(worker_main.check_health(settings, args.name, live_only=args.live)))
    worker_main.run_worker(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
