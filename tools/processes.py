"""The processes `make run` starts: each one's output goes whole to .run/logs/<name>.log, and the console gets only
what a person needs — its warnings and errors, one line each, named after the process.

A service logs JSON lines with a `level`; Envoy's access log is JSON without one (file only); anything else (a
fake's or Envoy's own lines, a Python traceback) reaches the console when it reads like a warning or an error.
"""

from __future__ import annotations

import json
import pathlib
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

_LOUD_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
_LOUD_TEXT = re.compile(r"\b(warn|warning|error|critical|fatal|traceback|exception)\b", re.IGNORECASE)


def console_line(name: str, line: str) -> str | None:
    """What the console shows of one output line of process `name`, or None when it stays in the log file."""
    text = line.rstrip("\n")
    if not text.strip():
        return None
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            level = str(record.get("level", "")).upper()
            if level not in _LOUD_LEVELS:
                return None
            where = record.get("logger", "")
            return f"[{name}] {level} {where}: {record.get('message', '')}".replace(" : ", ": ")
    return f"[{name}] {text}" if _LOUD_TEXT.search(text) else None


class Processes:
    """Started processes with their logs; stop_all() ends them (SIGTERM, then SIGKILL after 20 s)."""

    def __init__(self, logs: pathlib.Path, console: Callable[[str], None]) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self._console = console
        self._started: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []

    def log_path(self, name: str) -> pathlib.Path:
        return self.logs / f"{name}.log"

    def start(
        self, name: str, argv: Sequence[str], *, cwd: pathlib.Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        # One log file per process name and run: a restarted `make run` starts it afresh.
        log_file = self.log_path(name).open("w", encoding="utf-8")
        thread = threading.Thread(target=self._copy, args=(name, process.stdout, log_file), daemon=True)
        thread.start()
        self._started[name] = process
        self._threads.append(thread)
        return process

    def _copy(self, name: str, output: IO[bytes], log_file: IO[str]) -> None:
        with log_file:
            for raw in output:
                line = raw.decode("utf-8", errors="replace")
                log_file.write(line)
                log_file.flush()
                shown = console_line(name, line)
                if shown is not None:
                    self._console(shown)

    def exited(self) -> list[str]:
        return [name for name, process in self._started.items() if process.poll() is not None]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._started.values()]

    def stop_all(self) -> None:
        for process in self._started.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._started.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(timeout=5)
