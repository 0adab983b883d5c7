"""The contracts: generated code is current, buf lint is clean and can fail, every RPC is bound to REST
and has an access rule in its service that declares whose resource it reaches."""

from __future__ import annotations

import filecmp
import importlib
import inspect
import pathlib
import subprocess
import sys

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from services.common.config import GRPC_SERVICES, SERVICE_NAMES
from services.common.interceptors import NotOwned, Owned

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent


def _differences(left: pathlib.Path, right: pathlib.Path) -> list[str]:
    compare = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [*compare.left_only, *compare.right_only, *compare.diff_files]
    for sub in compare.common_dirs:
        found += [f"{sub}/{name}" for name in _differences(left / sub, right / sub)]
    return found


def test_generated_code_matches_the_protos(tmp_path: pathlib.Path) -> None:
    fresh, fresh_client = tmp_path / "gen", tmp_path / "client"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "genproto.py"), "--out", str(fresh), "--client-out", str(fresh_client)],
        check=True,
        env={"PATH": f"{BIN}:/usr/bin:/bin"},
    )
    stale = _differences(ROOT / "gen", fresh)
    assert not stale, f"gen/ is stale, run `make proto`: {stale}"
    stale = _differences(ROOT / "nerava_client" / "_proto", fresh_client)
    assert not stale, f"nerava_client/_proto is stale, run `make proto`: {stale}"


def test_buf_lint_is_clean() -> None:
    result = subprocess.run(
        [BIN / "buf", "lint", "gen/nerava.binpb", "--path", "nerava"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_catches_a_violation(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "proto" / "nerava" / "bad" / "v1"
    bad.mkdir(parents=True)
    (bad / "bad.proto").write_text('syntax = "proto3";\npackage nerava.bad.v1;\nmessage lower_case_message {}\n')
    image = tmp_path / "bad.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path / 'proto'}",
            f"--descriptor_set_out={image}",
            "nerava/bad/v1/bad.proto",
        ],
        check=True,
    )
    result = subprocess.run([BIN / "buf", "lint", str(image)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "PascalCase" in result.stdout + result.stderr


def _services() -> list[descriptor_pb2.ServiceDescriptorProto]:
    image = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / "nerava.binpb").read_bytes())
    return [service for file in image.file if file.package.startswith("nerava.") for service in file.service]


def test_every_service_is_in_the_descriptor_set_under_its_one_name() -> None:
    image = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / "nerava.binpb").read_bytes())
    served = {f"{file.package}.{service.name}" for file in image.file if file.package.startswith("nerava.")
              for service in file.service}  # fmt: skip
    assert served == set(GRPC_SERVICES.values())
    for name in SERVICE_NAMES:
        assert GRPC_SERVICES[name] == importlib.import_module(f"services.{name}.api").SERVICE_NAME


@pytest.mark.parametrize("service", _services(), ids=lambda s: s.name)
def test_every_rpc_has_a_rest_binding(service: descriptor_pb2.ServiceDescriptorProto) -> None:
    unbound = [m.name for m in service.method if not m.options.HasExtension(annotations_pb2.http)]
    assert not unbound


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_rpc_has_an_access_rule(name: str) -> None:
    api = importlib.import_module(f"services.{name}.api")
    service = next(s for s in _services() if s.name == f"{name.capitalize()}Service")
    assert set(api.ACCESS) == {m.name for m in service.method}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_rpc_declares_whose_resource_it_reaches(name: str) -> None:
    """Owned: a field of the request names the resource, and the rule admits the roles that own one (else no
    owner could reach it); NotOwned: a reason a reader can check. tests/fuzz/test_access_matrix.py calls each
    owned RPC as a stranger and as the owner."""
    api = importlib.import_module(f"services.{name}.api")
    wrong: list[str] = []
    for method, rule in sorted(api.ACCESS.items()):
        ownership = rule.ownership
        if isinstance(ownership, Owned):
            request = descriptor_pool.Default().FindMethodByName(f"{api.SERVICE_NAME}.{method}").input_type
            field = request.fields_by_name.get(ownership.field)
            if field is None or field.type != field.TYPE_STRING:
                wrong.append(f"{method}: {request.name} has no string field {ownership.field}")
            if rule.public or rule.internal or (rule.roles is not None and not ownership.owners <= rule.roles):
                wrong.append(f"{method}: its rule does not admit the owners of a {ownership.resource}")
        elif not (isinstance(ownership, NotOwned) and ownership.why.strip()):
            wrong.append(f"{method}: declare .owned(…) or .not_owned(why)")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_rpc_of_a_service_is_served(service: str) -> None:
    """The generated base class answers UNIMPLEMENTED for an RPC its servicer leaves out; the runtime has no
    fallback for that any more, so the servicer must define every method of its contract."""
    api = importlib.import_module(f"services.{service}.api")
    grpc_module = importlib.import_module(f"nerava.{service}.v1.{service}_pb2_grpc")
    service_descriptor = descriptor_pool.Default().FindServiceByName(api.SERVICE_NAME)
    base = getattr(grpc_module, f"{service_descriptor.name}Servicer")
    [servicer] = {
        cls for _, cls in inspect.getmembers(api, inspect.isclass) if issubclass(cls, base) and cls is not base
    } - {
        parent
        for _, cls in inspect.getmembers(api, inspect.isclass)
        if issubclass(cls, base)
        for parent in cls.__mro__[1:]
    }
    missing = [m.name for m in service_descriptor.methods if getattr(servicer, m.name) is getattr(base, m.name)]
    assert missing == []
