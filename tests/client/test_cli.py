"""`nerava`, the operators' CLI, run as the installed console script against the running services: tables
by default, JSON with --json, and its exit codes (0 done, 2 usage, 3 refused with the reason, 4 unreachable)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
import uuid

from fakes.twilio_verify import FakeTwilioVerify
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import NewPerson
from tests.support.rpc import random_phone
from tools.embedded import free_port

NERAVA = pathlib.Path(sys.executable).parent / "nerava"


class Cli:
    def __init__(self, mesh: Mesh, home: pathlib.Path) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
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
