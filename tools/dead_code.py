"""Dead code: `make lint` runs vulture over the project and fails on anything nothing uses.

vulture reads the source only, so it cannot see the names that are used by reflection. Those are declared here
once, by where they come from rather than one by one: gRPC calls servicer methods by their RPC names and sets
message fields by their proto names (both read from the descriptor set `make proto` writes), Alembic reads a
migration's module-level names, grpc.aio calls interceptor hooks, pytest and Hypothesis call what their
decorators mark. Anything else vulture reports is deleted, not listed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import vulture
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("services", "gateway", "tools", "nerava_client", "bench", "fakes", "tests")
EXCLUDE = ("nerava_client/_proto", "gen")
MIN_CONFIDENCE = 60

# Called by a framework, never by our code.
FRAMEWORK_NAMES = (
    "down_revision",  # Alembic: a migration's place in the chain
    "branch_labels",
    "depends_on",
    "intercept_*",  # grpc.aio server and client interceptor hooks
    "handle_async_request",  # httpx transport hook
    "cache_ok",  # SQLAlchemy: a custom type's statement-cache promise
    "get_col_spec",
    "pytest_*",
    "exc_type",  # __aexit__'s signature
    "tb",
    "teardown",  # Hypothesis state machines
    "enable_telemetry",  # the Stripe SDK's module switch, set to stop it calling home
    "Export",  # the OTLP trace service's RPC (tools/trace_receiver.py), not one of our contracts
    "ALLOWED",  # StartDecision(int) is built from the OTP Lua script's answer
)
FRAMEWORK_DECORATORS = ("@rule", "@invariant", "@initialize", "@precondition", "@pytest.fixture")


def _proto_names() -> list[str]:
    """Every RPC, message field and enum value name of the contracts: servicers and messages use them by name."""
    image = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / "nerava.binpb").read_bytes())
    names: set[str] = set()

    def message(m: descriptor_pb2.DescriptorProto) -> None:
        names.update(f.name for f in m.field)
        for nested in m.nested_type:
            message(nested)
        for e in m.enum_type:
            names.update(v.name for v in e.value)

    for file in image.file:
        for service in file.service:
            names.update(method.name for method in service.method)
        for m in file.message_type:
            message(m)
        for e in file.enum_type:
            names.update(v.name for v in e.value)
    return sorted(names)


def unused() -> list[str]:
    finder = vulture.Vulture(
        ignore_names=[*FRAMEWORK_NAMES, *_proto_names()], ignore_decorators=list(FRAMEWORK_DECORATORS)
    )
    finder.scavenge([str(ROOT / p) for p in PATHS], exclude=[str(ROOT / p) for p in EXCLUDE])
    return [item.get_report() for item in finder.get_unused_code(min_confidence=MIN_CONFIDENCE)]


def main() -> int:
    found = unused()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
