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
import datetime
import json
import os
import pathlib
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import betterproto2

from nerava_client import accounts, incentives, ledger
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


def _moment(text: str) -> datetime.datetime:
    """An RFC 3339 time; one without an offset is UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Usage(f"not an RFC 3339 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _ledger_check(args: argparse.Namespace) -> int:
    with _client(args) as client:
        violations = client.ledger.check_ledger(ledger.CheckLedgerRequest()).violations
    if args.json:
        _emit(args, {"holds": not violations, "violations": violations})
    else:
        sys.stdout.write("".join(f"VIOLATION {line}\n" for line in violations) or "the ledger holds\n")
    return EXIT_CHECK_FAILED if violations else EXIT_OK


def _reconcile(args: argparse.Namespace) -> int:
    request = ledger.RunReconciliationRequest(since=_moment(args.since) if args.since else None)
    with _client(args) as client:
        report = client.ledger.run_reconciliation(request)
    rows = [
        {"invariant": i.name, "status": "DRIFT" if i.drift_ids else "ok", "drift_ids": i.drift_ids}
        for i in report.invariants
    ]
    _emit(
        args, {"holds": report.holds, "invariants": rows} if args.json else rows, ["invariant", "status", "drift_ids"]
    )
    return EXIT_OK if report.holds else EXIT_CHECK_FAILED


SERVICES_WITH_OUTBOX = ("sessions", "incentives", "ledger", "merchants")


def _service_module(service: str) -> Any:
    import importlib

    return importlib.import_module(f"nerava_client._proto.nerava.{service}.v1")


def _outbox_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    with _client(args) as client:
        for service in [args.of] if args.of else SERVICES_WITH_OUTBOX:
            module = _service_module(service)
            answer = getattr(client, service).list_dead_letters(module.ListDeadLettersRequest(limit=args.limit))
            rows += [{"service": service, **_plain(letter)} for letter in answer.dead_letters]
    _emit(args, rows, ["service", "id", "topic", "key", "attempts", "failed_at", "last_error"])
    return EXIT_OK


def _outbox_replay(args: argparse.Namespace) -> int:
    if bool(args.ids) == args.all:
        raise _Usage("name the row ids to replay, or --all")
    try:
        ids = [int(i) for i in args.ids]
    except ValueError:
        raise _Usage("row ids are numbers (see nerava outbox list)") from None
    module = _service_module(args.of)
    request = module.ReplayDeadLettersRequest(ids=ids, reason=args.reason)
    with _client(args) as client:
        replayed = getattr(client, args.of).replay_dead_letters(request).replayed
    _emit(args, {"service": args.of, "replayed": replayed}, ["service", "replayed"])
    return EXIT_OK


def _payouts_unknown(args: argparse.Namespace) -> int:
    with _client(args) as client:
        stuck = client.ledger.list_unknown_payouts(ledger.ListUnknownPayoutsRequest(limit=args.limit)).payouts
    rows = [
        {**_plain(p.payout), "driver_id": p.driver_id, "unknown_since": _plain(p).get("updated_at")}
        for p in stuck
        if p.payout is not None
    ]
    _emit(args, rows, ["id", "driver_id", "amount_cents", "created_at", "unknown_since"])
    return EXIT_OK


def _payouts_reconcile(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = client.ledger.reconcile_payouts(ledger.ReconcilePayoutsRequest(reason=args.reason))
    _emit(args, answer, ["settled", "still_unknown"])
    return EXIT_OK


_FLAG_COLUMNS = ["name", "enabled", "environment", "updated_at", "updated_by", "description"]


def _flags_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        flags = client.accounts.list_flags(accounts.ListFlagsRequest()).flags
    _emit(args, flags, _FLAG_COLUMNS)
    return EXIT_OK


def _flags_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        flag = client.accounts.get_flag(accounts.GetFlagRequest(name=args.name)).flag
    _emit(args, flag, _FLAG_COLUMNS)
    return EXIT_OK


def _flags_toggle(args: argparse.Namespace) -> int:
    request = accounts.ToggleFlagRequest(name=args.name, enabled=args.enabled, reason=args.reason)
    with _client(args) as client:
        flag = client.accounts.toggle_flag(request).flag
    _emit(args, flag, _FLAG_COLUMNS)
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    request = accounts.ListAuditEntriesRequest(
        actor=args.actor or "",
        action=args.action or "",
        target=args.target or "",
        since=_moment(args.since) if args.since else None,
        until=_moment(args.until) if args.until else None,
        page_size=min(args.limit, 500),
    )
    entries: list[Any] = []
    with _client(args) as client:
        while True:
            page = client.accounts.list_audit_entries(request)
            entries += page.entries
            if not page.next_page_token or len(entries) >= args.limit:
                break
            request.page_token = page.next_page_token
    _emit(args, entries[: args.limit], ["occurred_at", "actor", "action", "target", "reason", "request_id", "service"])
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

    _operations(commands, command)

    trace = command(commands, "trace", _trace, "one request as a tree of spans across the gateway and the services")
    trace.add_argument("id", help="the request id (x-request-id) or the trace id")
    trace.add_argument("--store", default=os.environ.get("NERAVA_TRACE_STORE", str(DEFAULT_STORE)))
    return parser


_Command = Callable[..., argparse.ArgumentParser]


def _operations(commands: argparse._SubParsersAction[argparse.ArgumentParser], command: _Command) -> None:
    """The operators' commands: ledger, reconcile, outbox, payouts, flags, audit."""
    ledger_group = commands.add_parser("ledger", help="the ledger").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    command(ledger_group, "check", _ledger_check, "the ledger's invariants, now (exit 1 on a violation)")
    reconcile = command(commands, "reconcile", _reconcile, "money between services vs the ledger (exit 1 on drift)")
    reconcile.add_argument("--since", help="only what was created since this time (RFC 3339)")

    outbox = commands.add_parser("outbox", help="the outboxes' dead letters").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    outbox_list = command(outbox, "list", _outbox_list, "deliveries given up on, newest first")
    outbox_list.add_argument("of", nargs="?", choices=SERVICES_WITH_OUTBOX, help="one service (default: all)")
    outbox_list.add_argument("--limit", type=int, default=100)
    replay = command(outbox, "replay", _outbox_replay, "put dead letters back in the queue (admin; audited)")
    replay.add_argument("of", choices=SERVICES_WITH_OUTBOX, help="the service whose outbox holds them")
    replay.add_argument("ids", nargs="*", help="row ids (see outbox list)")
    replay.add_argument("--all", action="store_true", help="every dead letter of the service")
    replay.add_argument("--reason", required=True, help="why; kept in the audit log")

    payouts = commands.add_parser("payouts", help="driver payouts").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    unknown = command(payouts, "unknown", _payouts_unknown, "payouts whose Stripe answer was lost, oldest first")
    unknown.add_argument("--limit", type=int, default=100)
    settle = command(payouts, "reconcile", _payouts_reconcile, "settle unknown payouts now by asking Stripe (admin)")
    settle.add_argument("--reason", required=True, help="why; kept in the audit log")

    flags = command(commands, "flags", _flags_list, "feature flags of this environment (default: list)")
    flags_actions = flags.add_subparsers(dest="action", metavar="ACTION")
    command(flags_actions, "list", _flags_list, "every flag and its value")
    flags_get = command(flags_actions, "get", _flags_get, "one flag")
    flags_get.add_argument("name")
    toggle = command(flags_actions, "toggle", _flags_toggle, "flip a flag, or set it with --on/--off (admin; audited)")
    toggle.add_argument("name")
    value = toggle.add_mutually_exclusive_group()
    value.add_argument("--on", dest="enabled", action="store_const", const=True, default=None)
    value.add_argument("--off", dest="enabled", action="store_const", const=False)
    toggle.add_argument("--reason", required=True, help="why; kept in the audit log")

    audit = command(commands, "audit", _audit, "the audit log of every service, newest first (admin)")
    audit.add_argument("--actor", help="a user's public id, or service:<name>")
    audit.add_argument("--action", help='an action, or a prefix ending in "." (e.g. campaign.)')
    audit.add_argument("--target", help="e.g. user:<id>, campaign:<id>, flag:<name>")
    audit.add_argument("--since", help="RFC 3339")
    audit.add_argument("--until", help="RFC 3339")
    audit.add_argument("--limit", type=int, default=50)


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
