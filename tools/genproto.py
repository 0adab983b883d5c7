"""Generates Python code and the Envoy descriptor set from proto/ (`make proto`).

Everything third-party comes from installed packages, never from copied files:
- google/api/*.proto and google/rpc/*.proto are read from googleapis-common-protos' wheel,
- google/protobuf/*.proto from grpcio-tools' bundled include directory,
- buf/validate/validate.proto exists only as a compiled descriptor inside protovalidate's wheel (it ships
  no .proto source), so it is handed to protoc with --descriptor_set_in.

Outputs (all under gen/, committed, never edited by hand):
- gen/nerava/**/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py, *_pb2_grpc.pyi (messages, types, grpc/grpc.aio stubs),
- gen/buf/validate/validate_pb2.py(+.pyi): the runtime module our generated code imports for the
  buf.validate options, generated from protovalidate's descriptor,
- gen/nerava.binpb: one FileDescriptorSet with imports and source info, including google/rpc/status and
  error_details so Envoy's transcoder can print error details; buf lint reads it as an image.

Usage: python tools/genproto.py [--out DIR]   (default DIR: gen)
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

import google.api.annotations_pb2
import grpc_tools
from google.protobuf import descriptor_pb2
from protovalidate._gen.buf.validate import validate_pb

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GOOGLEAPIS_DIR = pathlib.Path(google.api.annotations_pb2.__file__).resolve().parent.parent.parent
WKT_DIR = pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"
# Error payloads the gateway must be able to render in JSON error bodies.
EXTRA_DESCRIPTOR_FILES = ["google/rpc/status.proto", "google/rpc/error_details.proto"]
VALIDATE_PROTO = "buf/validate/validate.proto"


def _protoc(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"protoc failed: {' '.join(cmd)}")


def _validate_descriptor_set(path: pathlib.Path) -> None:
    """Writes protovalidate's validate.proto descriptor, with the well-known types it imports."""
    with tempfile.TemporaryDirectory() as tmp:
        wkt_set = pathlib.Path(tmp) / "wkt.binpb"
        _protoc(
            [
                f"-I{WKT_DIR}",
                f"--descriptor_set_out={wkt_set}",
                "google/protobuf/descriptor.proto",
                "google/protobuf/duration.proto",
                "google/protobuf/field_mask.proto",
                "google/protobuf/timestamp.proto",
            ]
        )
        fds = descriptor_pb2.FileDescriptorSet.FromString(wkt_set.read_bytes())
    validate_file = descriptor_pb2.FileDescriptorProto.FromString(bytes(validate_pb.desc().proto.to_binary()))
    fds.file.append(validate_file)
    path.write_bytes(fds.SerializeToString(deterministic=True))


def generate(out: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        deps = pathlib.Path(tmp) / "validate.binpb"
        _validate_descriptor_set(deps)
        # Imports are looked up in the descriptor set first, then on the -I paths.
        includes = [f"--descriptor_set_in={deps}", f"-I{PROTO_DIR}", f"-I{GOOGLEAPIS_DIR}", f"-I{WKT_DIR}"]
        _protoc(
            [
                *includes,
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                f"--mypy_grpc_out={out}",
                *protos,
            ]
        )
        _protoc([*includes, f"--python_out={out}", f"--pyi_out={out}", VALIDATE_PROTO])
        _protoc(
            [
                *includes,
                "--include_imports",
                "--include_source_info",
                f"--descriptor_set_out={out / 'nerava.binpb'}",
                *protos,
                *EXTRA_DESCRIPTOR_FILES,
            ]
        )
    # Every generated directory is a regular package so mypy and importers agree on module names.
    for directory in [out, *[d for d in out.rglob("*") if d.is_dir()]]:
        (directory / "__init__.py").touch()
    (out / "__init__.py").unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "gen")
    generate(parser.parse_args().out.resolve())


if __name__ == "__main__":
    main()
