"""ErrorInfo reasons, declared once per service: services/<name>/reasons.py (its Reason) plus the shared runtime's
(services/common/reasons.py, CommonReason) are exactly the reasons the "Errors carry" comment of its proto
documents, both ways; and every reason its code gives is one of them (the runtime's code gives only CommonReason's)."""

from __future__ import annotations

import ast
import importlib
import pathlib
import re
from collections.abc import Iterator

import pytest

from services.common import errors
from services.common.config import SERVICE_NAMES
from services.common.interceptors import Owned
from services.common.reasons import CommonReason

ROOT = pathlib.Path(__file__).resolve().parent.parent
_DOCUMENTED = re.compile(r"^//   ([A-Z][A-Z0-9_]+)\s+\(", re.MULTILINE)
# How the ledger's PL/pgSQL names a refusal its Python side maps to a status (services/ledger/posting.py).
_PLPGSQL_REFUSAL = re.compile(r"v_error := '([A-Z][A-Z0-9_]+)'")
_DOMAIN_ERRORS = frozenset(
    name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, errors.DomainError)
)


def documented(proto_text: str) -> set[str]:
    """The reasons listed in the proto's "Errors carry … one of these reasons:" comment."""
    lines = proto_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("// Errors carry"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("//   "):
        end += 1
    return set(_DOCUMENTED.findall("\n".join(lines[start:end])))


def reasons_given(source: str) -> Iterator[tuple[int, str]]:
    """(line, reason) of every reason a module gives: the reason argument of a DomainError (literal, a module constant
    or a registry member), and the keys of a mapping from reasons to DomainError classes. A reason passed on from
    elsewhere (`refused.reason`) was checked where it was made."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def value(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id.endswith("Reason"):
            return node.attr
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name not in _DOMAIN_ERRORS:
                continue
            positional = node.args[1:2] if name == "InvalidArgument" else node.args[:1]
            for argument in [*positional, *(k.value for k in node.keywords if k.arg == "reason")]:
                reason = value(argument)
                if reason is not None:
                    yield argument.lineno, reason
        elif (
            isinstance(node, ast.Dict)
            and node.values
            and all(isinstance(v, ast.Name) and v.id in _DOMAIN_ERRORS for v in node.values)
        ):
            for key in node.keys:
                reason = value(key) if key is not None else None
                if reason is not None:
                    yield key.lineno if key is not None else node.lineno, reason


def _modules(directory: pathlib.Path) -> Iterator[pathlib.Path]:
    return (path for path in sorted(directory.rglob("*.py")) if "migrations" not in path.parts)


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_the_registry_is_what_the_proto_documents(name: str) -> None:
    registry = {reason.value for reason in importlib.import_module(f"services.{name}.reasons").Reason}
    proto = documented((ROOT / "proto" / "nerava" / name / "v1" / f"{name}.proto").read_text())
    assert not registry & set(CommonReason), "the shared runtime's reasons are CommonReason's"
    assert sorted(proto - registry - set(CommonReason)) == [], "documented in the proto, missing from the registry"
    assert sorted((registry | set(CommonReason)) - proto) == [], "in the registry, not documented in the proto"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_reason_the_service_gives_is_registered(name: str) -> None:
    registry = {reason.value for reason in importlib.import_module(f"services.{name}.reasons").Reason}
    known = registry | set(CommonReason)
    unknown = [
        f"{path.relative_to(ROOT)}:{line} {reason}"
        for path in _modules(ROOT / "services" / name)
        for line, reason in reasons_given(path.read_text())
        if reason not in known
    ]
    for migration in sorted((ROOT / "services" / name / "migrations").rglob("*.py")):
        unknown += [f"{migration.relative_to(ROOT)} {r}" for r in _PLPGSQL_REFUSAL.findall(migration.read_text())
                    if r not in known]  # fmt: skip
    assert unknown == []


def test_the_shared_runtime_gives_only_common_reasons() -> None:
    unknown = [
        f"{path.relative_to(ROOT)}:{line} {reason}"
        for path in _modules(ROOT / "services" / "common")
        for line, reason in reasons_given(path.read_text())
        if reason not in set(CommonReason)
    ]
    assert unknown == []


def test_the_check_finds_the_reasons_a_module_gives() -> None:
    source = (
        'LOST = "PAYOUT_LOST"\n'
        'def f():\n    raise NotFound("THING_NOT_FOUND", "no such thing")\n'
        "def g():\n    raise Unavailable(LOST, 'x')\n"
        "def h():\n    raise InvalidArgument([('f', 'why')], Reason.BAD_THING)\n"
        "_REFUSALS = {'TOO_MUCH': FailedPrecondition}\n"
        "def i(refused):\n    raise FailedPrecondition(refused.reason, 'passed on')\n"
    )
    assert sorted(reason for _, reason in reasons_given(source)) == [
        "BAD_THING",
        "PAYOUT_LOST",
        "THING_NOT_FOUND",
        "TOO_MUCH",
    ]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_an_owned_rpc_refuses_a_stranger_as_its_proto_documents(name: str) -> None:
    """The refusal an access table declares for another's resource (Owned.reason, Owned.refusal) is the reason and
    status the proto documents for it."""
    text = (ROOT / "proto" / "nerava" / name / "v1" / f"{name}.proto").read_text()
    codes = dict(re.findall(r"^//   ([A-Z][A-Z0-9_]+)\s+\(([A-Z_]+)\)", text, re.MULTILINE))
    owned = {
        method: rule.ownership
        for method, rule in importlib.import_module(f"services.{name}.api").ACCESS.items()
        if isinstance(rule.ownership, Owned)
    }
    wrong = [
        f"{method}: {own.reason} ({own.refusal.name}), documented as {codes.get(own.reason)}"
        for method, own in sorted(owned.items())
        if codes.get(own.reason) != own.refusal.name
    ]
    assert wrong == []


_RPC = re.compile(r"^  rpc (\w+)\(")
_NO_OWN_REASONS = "none beyond the common ones."


def errors_lines(proto_text: str) -> dict[str, str | None]:
    """Each RPC's `Errors:` line of its comment (with its continuation lines, up to the rpc), or None without one:
    gateway/openapi.py lists an operation's service reasons from what its comment names."""
    found: dict[str, str | None] = {}
    comment: list[str] = []
    for line in proto_text.splitlines():
        rpc = _RPC.match(line)
        if rpc:
            text = " ".join(comment)
            found[rpc.group(1)] = text[text.index("Errors:") + len("Errors:") :].strip() if "Errors:" in text else None
        comment = [*comment, line.strip().removeprefix("//").strip()] if line.startswith("  //") else []
    return found


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_rpc_names_the_reasons_it_gives(name: str) -> None:
    """Every RPC's comment ends in `Errors: A, B (when).` naming only reasons its service documents, or says it gives
    none beyond the common ones — so the OpenAPI document tells each operation's own refusals."""
    text = (ROOT / "proto" / "nerava" / name / "v1" / f"{name}.proto").read_text()
    known = documented(text)
    lines = errors_lines(text)
    assert lines, "no rpc found"
    missing = sorted(rpc for rpc, errors_line in lines.items() if errors_line is None)
    undocumented = sorted(
        f"{rpc}: {reason}"
        for rpc, errors_line in lines.items()
        if errors_line and errors_line != _NO_OWN_REASONS
        for reason in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", errors_line)
        if reason not in known
    )
    empty = sorted(
        rpc
        for rpc, errors_line in lines.items()
        if errors_line is not None
        and errors_line != _NO_OWN_REASONS
        and not re.search(r"\b[A-Z][A-Z0-9_]+\b", errors_line)
    )
    assert (missing, undocumented, empty) == ([], [], [])


def test_the_errors_line_check_reads_each_rpc_comment() -> None:
    source = (
        "  // Gets it.\n  // Errors: THING_NOT_FOUND,\n  // THING_GONE (after a day).\n  rpc GetThing(A) returns (B);\n"
        "  // Lists them.\n  rpc ListThings(A) returns (B);\n"
        "  // Errors: none beyond the common ones.\n  rpc Ping(A) returns (B);\n"
    )
    assert errors_lines(source) == {
        "GetThing": "THING_NOT_FOUND, THING_GONE (after a day).",
        "ListThings": None,
        "Ping": _NO_OWN_REASONS,
    }


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_an_owned_rpc_names_the_refusal_its_access_table_gives(name: str) -> None:
    """The interceptor, not the handler, refuses another's resource: its reason is on the RPC's Errors line too."""
    lines = errors_lines((ROOT / "proto" / "nerava" / name / "v1" / f"{name}.proto").read_text())
    unnamed = [
        f"{method}: {rule.ownership.reason}"
        for method, rule in sorted(importlib.import_module(f"services.{name}.api").ACCESS.items())
        if isinstance(rule.ownership, Owned) and not re.search(rf"\b{rule.ownership.reason}\b", lines.get(method) or "")
    ]
    assert unnamed == []
