"""`nerava` — the operators' command line over the typed client.

Human tables by default, ``--json`` for scripts. Exit codes: 0 done; 1 a check found a problem; 2 bad usage;
3 the mesh refused the call (the ErrorInfo reason is printed); 4 the mesh could not be reached.

Credentials: a person's access token from ``NERAVA_TOKEN`` or the file ``nerava login`` writes
(``NERAVA_TOKEN_FILE``, default ``~/.config/nerava/token``); ``--service`` acts with the deployment's
service-token secret (``SERVICE_TOKEN_SECRET``) for internal RPCs instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import betterproto2

from nerava_client import accounts, incentives
from nerava_client.client import Client
from nerava_client.errors import NeravaError, Unavailable
from nerava_client.traces import DEFAULT_STORE, TraceStore, tree_lines

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4


def _token_file() -> pathlib.Path:
    default = pathlib.Path.home() / ".config" / "nerava" / "token"
    return pathlib.Path(os.environ.get("NERAVA_TOKEN_FILE", str(default)))


def _client(args: argparse.Namespace) -> Client:
    if args.service:
        secret = os.environ.get("SERVICE_TOKEN_SECRET", "")
        if not secret:
            raise _Usage("--service needs SERVICE_TOKEN_SECRET")
        return Client(service_secret=secret)
    token = os.environ.get("NERAVA_TOKEN", "")
    if not token and _token_file().exists():
        token = _token_file().read_text().strip()
    return Client(token=token or None)


class _Usage(Exception):
    """The command line cannot be carried out as given."""


# --- output ----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-ready value: messages as proto3 JSON with the proto's field names, enums by name."""
    if isinstance(value, betterproto2.Message):
        return value.to_dict(casing=betterproto2.Casing.SNAKE)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)]
    out.write("  ".join(column.upper().ljust(widths[i]) for i, column in enumerate(columns)).rstrip() + "\n")
    for line in cells:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(_cell(item) for item in value)
    return str(value)


def _emit(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None) -> None:
    plain = _plain(data)
    if args.json or columns is None:
        sys.stdout.write(json.dumps(plain, indent=None if args.json else 2, sort_keys=True) + "\n")
        return
    rows = plain if isinstance(plain, list) else [plain]
    _table(rows, columns, sys.stdout)


def _role(name: str) -> accounts.Role:
    try:
        return accounts.Role.from_string(name.upper())
    except ValueError:
        names = ", ".join(r.name.lower() for r in accounts.Role if r != accounts.Role.UNSPECIFIED)
        raise _Usage(f"unknown role {name!r} (one of {names})") from None


# --- commands --------------------------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    with Client() as client:
        client.accounts.start_phone_login(accounts.StartPhoneLoginRequest(phone=args.phone))
        code = args.code or input(f"code sent to {args.phone}: ").strip()
        answer = client.accounts.verify_phone_login(accounts.VerifyPhoneLoginRequest(phone=args.phone, code=code))
    path = _token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(answer.access_token + "\n")
    path.chmod(0o600)
    sys.stderr.write(f"signed in; access token saved to {path}\n")
    return EXIT_OK


def _whoami(args: argparse.Namespace) -> int:
    with _client(args) as client:
        me = client.accounts.get_me(accounts.GetMeRequest())
    _emit(args, me.user, ["public_id", "phone", "email", "roles"])
    return EXIT_OK


def _users_list(args: argparse.Namespace) -> int:
    role = _role(args.role) if args.role else accounts.Role.UNSPECIFIED
    users: list[accounts.User] = []
    with _client(args) as client:
        token = ""
        while True:
            page = client.accounts.list_users(accounts.ListUsersRequest(page_size=200, page_token=token, role=role))
            users.extend(page.users)
            token = page.next_page_token
            if not token or len(users) >= args.limit:
                break
    _emit(args, users[: args.limit], ["public_id", "phone", "email", "roles", "active"])
    return EXIT_OK


def _users_roles(args: argparse.Namespace) -> int:
    roles = [_role(name) for name in args.roles.split(",") if name]
    request = accounts.SetUserRolesRequest(user_id=args.user_id, roles=roles, reason=args.reason)
    with _client(args) as client:
        user = client.accounts.set_user_roles(request).user
    _emit(args, user, ["public_id", "phone", "roles"])
    return EXIT_OK


def _grant_clawback(args: argparse.Namespace) -> int:
    request = incentives.ClawbackGrantRequest(
        grant_id=args.grant_id, reason=args.reason, request_id=args.request_id or str(uuid.uuid4())
    )
    with _client(args) as client:
        answer = client.incentives.clawback_grant(request)
    assert answer.grant is not None
    row = {**_plain(answer.grant), "campaign_remaining_cents": answer.campaign_remaining_cents}
    _emit(args, row, ["id", "campaign_id", "driver_id", "status", "campaign_remaining_cents"])
    return EXIT_OK


def _trace(args: argparse.Namespace) -> int:
    store_path = pathlib.Path(args.store)
    if not store_path.exists():
        raise _Usage(f"no trace store at {store_path} (make run keeps one; --store names another)")
    store = TraceStore(store_path)
    try:
        spans = store.find(args.id)
    finally:
        store.close()
    if not spans:
        sys.stderr.write(f"no trace for {args.id} in {store_path} (it keeps the last hours; spans arrive in ~5 s)\n")
        return EXIT_CHECK_FAILED
    if args.json:
        _emit(args, [dataclasses.asdict(span) | {"duration_ms": span.duration_ms} for span in spans])
    else:
        sys.stdout.write("\n".join(tree_lines(spans)) + "\n")
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("--service", action="store_true", help="act as a service (SERVICE_TOKEN_SECRET)")

    # --json and --service go after the command (argparse would let a sub-command's defaults undo them).
    parser = argparse.ArgumentParser(prog="nerava", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, run: Callable[..., int], doc: str
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=doc, description=doc, parents=[common])
        sub.set_defaults(run=run)
        return sub

    login = command(commands, "login", _login, "sign in with a phone code; saves the access token")
    login.add_argument("--phone", required=True)
    login.add_argument("--code", help="the code (asked for when omitted)")
    command(commands, "whoami", _whoami, "the signed-in user and their roles")

    users = commands.add_parser("users", help="users and their roles").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    users_list = command(users, "list", _users_list, "users, newest first")
    users_list.add_argument("--role", help="only users holding this role")
    users_list.add_argument("--limit", type=int, default=50)
    roles = command(users, "roles", _users_roles, "replace a user's roles (admin)")
    roles.add_argument("user_id")
    roles.add_argument("roles", help="comma-separated roles, e.g. driver,sponsor")
    roles.add_argument("--reason", required=True, help="why; kept in the audit log")

    grant = commands.add_parser("grant", help="campaign grants").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    clawback = command(grant, "clawback", _grant_clawback, "take a grant back and refund its campaign")
    clawback.add_argument("grant_id")
    clawback.add_argument("--reason", required=True)
    clawback.add_argument("--request-id", help="idempotency key (UUID) to repeat a clawback safely")

    trace = command(commands, "trace", _trace, "one request as a tree of spans across the gateway and the services")
    trace.add_argument("id", help="the request id (x-request-id) or the trace id")
    trace.add_argument("--store", default=os.environ.get("NERAVA_TRACE_STORE", str(DEFAULT_STORE)))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except _Usage as exc:
        parser.error(str(exc))
    except Unavailable as exc:
        sys.stderr.write(f"error: the mesh could not be reached: {exc}\n")
        return EXIT_UNREACHABLE
    except NeravaError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_REFUSED
    return EXIT_USAGE  # parser.error exits before this line


if __name__ == "__main__":
    sys.exit(main())
