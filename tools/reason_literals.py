"""Rewrites bare ErrorInfo reason strings at raise sites (`NotFound("X", ...)`) to the service's registry
(`Reason.X`), adding the import: a merge that brings code written before the registries is brought into line with
one command. Run: `python -m tools.reason_literals`; it prints what it changed."""

from __future__ import annotations

import importlib
import pathlib
import re

from services.common.config import SERVICE_NAMES

ROOT = pathlib.Path(__file__).resolve().parent.parent
_ERRORS = (
    "NotFound|FailedPrecondition|PermissionDenied|Unavailable|Aborted|AlreadyExists|ResourceExhausted|Unauthenticated"
)
_RAISE = re.compile(rf"\b({_ERRORS})\((\s*)\"([A-Z][A-Z0-9_]+)\"")


def rewrite(service: str) -> list[str]:
    registry = {reason.value for reason in importlib.import_module(f"services.{service}.reasons").Reason}
    changed = []
    for path in sorted((ROOT / "services" / service).rglob("*.py")):
        if "migrations" in path.parts or path.name == "reasons.py":
            continue
        text = path.read_text()
        new = _RAISE.sub(
            lambda m: f"{m[1]}({m[2]}Reason.{m[3]}" if m[3] in registry else m[0],
            text,
        )
        if new == text:
            continue
        if f"from services.{service}.reasons import Reason" not in new:
            new = new.replace("\nfrom services.", f"\nfrom services.{service}.reasons import Reason\nfrom services.", 1)
        path.write_text(new)
        changed.append(str(path.relative_to(ROOT)))
    return changed


def main() -> None:
    for service in SERVICE_NAMES:
        for path in rewrite(service):
            print(path)


if __name__ == "__main__":
    main()
