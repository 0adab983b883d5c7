"""Derives gateway/public_methods.json, the methods the gateway lets through without a token, from the services'
access tables (an RPC whose Access rule is public). Run by `python -m tools.k8s_check --write`; not by the renderer,
which reads the file: this module imports the services, the gateway's image has protobuf alone."""

from __future__ import annotations

import importlib
import json

from services.common.config import GRPC_SERVICES


def public_methods() -> dict[str, list[str]]:
    """Full gRPC service name → its public methods, sorted; services without one are left out."""
    derived: dict[str, list[str]] = {}
    for name, service in GRPC_SERVICES.items():
        access = importlib.import_module(f"services.{name}.api").ACCESS
        public = sorted(method for method, rule in access.items() if rule.public)
        if public:
            derived[service] = public
    return derived


def public_methods_json() -> bytes:
    return (json.dumps(public_methods(), indent=2) + "\n").encode()
