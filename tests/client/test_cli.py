"""`nerava`, the operators' CLI, run as the installed console script against the running services: tables
by default, JSON with --json, and its exit codes (0 done, 2 usage, 3 refused with the reason, 4 unreachable)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import pathlib
import sys
import uuid

import sqlalchemy as sa

from fakes.twilio_verify import FakeTwilioVerify
from services.common.db import create_engine
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import NewPerson
from tests.support.rpc import random_phone
from tools.embedded import free_port

NERAVA = pathlib.Path(sys.executable).parent / "nerava"
# The checkout under test: the shared virtualenv's editable install may point at another one.
CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, mesh: Mesh, home: pathlib.Path) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "PYTHONPATH": str(CHECKOUT),
            **{f"{name.upper()}_ADDR": mesh.address(name) for name in mesh.ports},
        }
        self.home = home

    async def run(self, *args: str, token: str = "", stdin: bytes = b"") -> tuple[int, str, str]:
        env = {**self.env, **({"NERAVA_TOKEN": token} if token else {})}
        process = await asyncio.create_subprocess_exec(
            NERAVA,
            *args,
            cwd=self.home,  # not the repository: the console script stands on its own
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(stdin)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


async def test_login_saves_a_token_that_later_commands_use(
    mesh: Mesh, twilio: FakeTwilioVerify, tmp_path: pathlib.Path
) -> None:
    cli, phone = Cli(mesh, tmp_path), random_phone()
    process = await asyncio.create_subprocess_exec(
        NERAVA,
        "login",
        "--phone",
        phone,
        cwd=tmp_path,
        env=cli.env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code = await eventually(lambda: twilio.last_code_sent_to(phone))  # asked for once the provider sent it
    _, login_err = await process.communicate(f"{code}\n".encode())
    assert process.returncode == 0, login_err
    token_file = tmp_path / ".config" / "nerava" / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600

    status, out, err = await cli.run("whoami", "--json")
    assert status == 0, err
    assert json.loads(out)["phone"] == phone
    assert json.loads(out)["roles"] == ["ROLE_DRIVER"]


async def test_an_admin_lists_users_and_changes_roles(mesh: Mesh, person: NewPerson, tmp_path: pathlib.Path) -> None:
    cli = Cli(mesh, tmp_path)
    admin, someone = await person("admin"), await person()

    status, out, err = await cli.run("users", "list", "--role", "admin", "--limit", "500", token=admin.token)
    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["PUBLIC_ID", "PHONE", "EMAIL", "ROLES", "ACTIVE"]
    assert any(row.startswith(admin.user_id) for row in rows)
    assert not any(row.startswith(someone.user_id) for row in rows)

    status, out, err = await cli.run(
        "users", "roles", someone.user_id, "driver,sponsor", "--reason", "runs a campaign", "--json", token=admin.token
    )
    assert status == 0, err
    assert sorted(json.loads(out)["roles"]) == ["ROLE_DRIVER", "ROLE_SPONSOR"]

    driver = await person()  # (someone's own token was revoked by the role change)
    status, _, err = await cli.run("users", "roles", driver.user_id, "admin", "--reason", "x y z", token=driver.token)
    assert status == 3
    assert "PERMISSION_DENIED" in err


async def test_refusals_and_bad_usage_have_their_exit_codes(
    mesh: Mesh, person: NewPerson, tmp_path: pathlib.Path
) -> None:
    cli = Cli(mesh, tmp_path)
    admin = await person("admin")

    status, _, err = await cli.run("grant", "clawback", str(uuid.uuid4()), "--reason", "fraud", token=admin.token)
    assert (status, "GRANT_NOT_FOUND" in err) == (3, True), err

    status, _, err = await cli.run("users", "roles", str(uuid.uuid4()), "pilot", "--reason", "abc", token=admin.token)
    assert status == 2
    assert "unknown role 'pilot'" in err

    status, _, err = await cli.run("whoami")
    assert status == 3
    assert "UNAUTHENTICATED" in err

    cli.env["ACCOUNTS_ADDR"] = f"127.0.0.1:{free_port()}"
    status, _, err = await cli.run("whoami", token=admin.token)
    assert status == 4
    assert "could not be reached" in err


async def test_ledger_check_and_reconcile_report_and_exit_by_their_result(
    mesh: Mesh, person: NewPerson, tmp_path: pathlib.Path
) -> None:
    cli = Cli(mesh, tmp_path)
    admin, driver = await person("admin_readonly"), await person()
    status, out, err = await cli.run("ledger", "check", token=admin.token)
    assert (status, out) == (0, "the ledger holds\n"), err
    status, out, err = await cli.run("ledger", "check", "--json", token=admin.token)
    assert (status, json.loads(out)) == (0, {"holds": True, "violations": []}), err

    # Nothing was created after this moment: every invariant holds over it, and each is listed.
    since = datetime.datetime.now(datetime.UTC).isoformat()
    status, out, err = await cli.run("reconcile", "--since", since, token=admin.token)
    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["INVARIANT", "STATUS", "DRIFT_IDS"]
    assert {"campaign_budget", "grant_transfer", "payout_transfer"} <= {row.split()[0] for row in rows}
    assert all(row.split()[1] == "ok" for row in rows)
    status, out, _ = await cli.run("reconcile", "--since", since, "--json", token=admin.token)
    assert json.loads(out)["holds"] is True

    status, _, err = await cli.run("ledger", "check", token=driver.token)
    assert (status, "PERMISSION_DENIED" in err) == (3, True)
    status, _, err = await cli.run("reconcile", "--since", "yesterday", token=admin.token)
    assert (status, "not an RFC 3339 time" in err) == (2, True)


async def test_outbox_dead_letters_are_listed_and_replayed_with_an_audit_entry(
    mesh: Mesh, person: NewPerson, tmp_path: pathlib.Path, database_url: str
) -> None:
    cli = Cli(mesh, tmp_path)
    admin = await person("admin")
    key = uuid.uuid4().hex
    engine = create_engine(database_url, "incentives")
    try:
        async with engine.begin() as conn:
            row_id = (
                await conn.execute(
                    sa.text(
                        "INSERT INTO outbox (topic, key, payload, attempts, last_error, failed_at)"
                        " VALUES ('test.no_handler', :key, '{}', 5, 'gave up', now()) RETURNING id"
                    ),
                    {"key": key},
                )
            ).scalar_one()
    finally:
        await engine.dispose()

    status, out, err = await cli.run("outbox", "list", "incentives", "--limit", "500", token=admin.token)
    assert status == 0, err
    assert out.splitlines()[0].split() == ["SERVICE", "ID", "TOPIC", "KEY", "ATTEMPTS", "FAILED_AT", "LAST_ERROR"]
    assert any(key in line for line in out.splitlines())
    status, out, err = await cli.run("outbox", "list", "--json", "--limit", "500", token=admin.token)
    assert status == 0, err
    parked = [row for row in json.loads(out) if row["key"] == key]
    assert [(row["service"], row["topic"], row["attempts"]) for row in parked] == [("incentives", "test.no_handler", 5)]

    status, out, err = await cli.run(
        "outbox", "replay", "incentives", str(row_id), "--reason", "handler deployed", "--json", token=admin.token
    )
    assert (status, json.loads(out)) == (0, {"service": "incentives", "replayed": 1}), err

    # The relay tries it again at once; with no handler for its topic it is parked again, after one attempt.
    async def parked_again() -> None:
        _, listed, _ = await cli.run("outbox", "list", "incentives", "--json", "--limit", "500", token=admin.token)
        assert [row["attempts"] for row in json.loads(listed) if row["key"] == key] == [1]

    await eventually(parked_again)
    status, out, err = await cli.run(
        "audit", "--action", "outbox.replay", "--actor", admin.user_id, "--json", token=admin.token
    )
    assert status == 0, err
    assert [(e["reason"], e["details"]["ids"], e["service"]) for e in json.loads(out)] == [
        ("handler deployed", str(row_id), "incentives")
    ]

    status, _, err = await cli.run("outbox", "replay", "incentives", "--reason", "all of it", token=admin.token)
    assert (status, "--all" in err) == (2, True)


async def test_payouts_stuck_unknown_are_listed_and_settled_by_an_admin(
    mesh: Mesh, person: NewPerson, tmp_path: pathlib.Path
) -> None:
    cli = Cli(mesh, tmp_path)
    admin, reader = await person("admin"), await person("admin_readonly")
    status, out, err = await cli.run("payouts", "unknown", token=reader.token)
    assert status == 0, err
    assert out.splitlines()[0].split() == ["ID", "DRIVER_ID", "AMOUNT_CENTS", "CREATED_AT", "UNKNOWN_SINCE"]
    status, out, err = await cli.run("payouts", "reconcile", "--reason", "stripe incident", "--json", token=admin.token)
    assert status == 0, err
    settled = json.loads(out)
    assert set(settled) <= {"settled", "still_unknown"}  # proto3 JSON leaves out zeros
    status, _, err = await cli.run("payouts", "reconcile", "--reason", "stripe incident", token=reader.token)
    assert (status, "PERMISSION_DENIED" in err) == (3, True)
    status, out, err = await cli.run(
        "audit", "--action", "payouts.reconcile", "--actor", admin.user_id, token=admin.token
    )
    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["OCCURRED_AT", "ACTOR", "ACTION", "TARGET", "REASON", "REQUEST_ID", "SERVICE"]
    assert len(rows) == 1 and "stripe incident" in rows[0]


async def test_flags_are_listed_toggled_by_an_admin_and_audited(
    mesh: Mesh, person: NewPerson, tmp_path: pathlib.Path
) -> None:
    cli = Cli(mesh, tmp_path)
    admin, driver = await person("admin"), await person()
    status, out, err = await cli.run("flags", token=driver.token)
    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["NAME", "ENABLED", "ENVIRONMENT"]
    assert {row.split()[0] for row in rows} == {"places_geocoding", "telemetry_ingestion"}

    try:
        status, out, err = await cli.run(
            "flags", "toggle", "places_geocoding", "--off", "--reason", "quota", "--json", token=admin.token
        )
        assert status == 0, err
        assert json.loads(out).get("enabled", False) is False
        status, out, err = await cli.run("flags", "get", "places_geocoding", "--json")
        assert (status, json.loads(out).get("enabled", False)) == (0, False), err
    finally:
        status, _, err = await cli.run(
            "flags", "toggle", "places_geocoding", "--on", "--reason", "quota back", token=admin.token
        )
        assert status == 0, err

    status, _, err = await cli.run("flags", "toggle", "places_geocoding", "--reason", "mine", token=driver.token)
    assert (status, "PERMISSION_DENIED" in err) == (3, True)
    status, _, err = await cli.run("flags", "get", "no_such_flag")
    assert (status, "FLAG_NOT_FOUND" in err) == (3, True)

    status, out, err = await cli.run(
        "audit", "--actor", admin.user_id, "--action", "flag.", "--json", token=admin.token
    )
    assert status == 0, err
    assert [(e["action"], e["target"], e["reason"]) for e in json.loads(out)] == [
        ("flag.toggle", "flag:places_geocoding", "quota back"),
        ("flag.toggle", "flag:places_geocoding", "quota"),
    ]
    status, _, err = await cli.run("audit", token=driver.token)
    assert (status, "PERMISSION_DENIED" in err) == (3, True)
