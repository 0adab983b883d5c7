"""The Redoc bundle the gateway serves at /docs/redoc.standalone.js: fetched from the npm registry by the ordinary
client (`npm pack`, pinned version), checked against the registry's pinned sha512 integrity before anything is
read from it, and kept in build/ (never committed). `make setup` runs it; so does the test gateway when the file
is missing; the gateway image fetches and checks the same pin (deploy/docker/gateway.Dockerfile). Standard
library only: the gateway image's renderer imports this module.

Usage: python -m gateway.redoc  (prints the bundle's path)
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
VERSION = "2.5.0"
# dist.integrity of redoc@2.5.0 as the npm registry publishes it: the sha512 of the package tarball.
INTEGRITY = "sha512-NpYsOZ1PD9qFdjbLVBZJWptqE+4Y6TkUuvEOqPUmoH7AKOmPcE+hYjotLxQNTqVoWL4z0T2uxILmcc8JGDci+Q=="
MEMBER = "package/bundles/redoc.standalone.js"
BUNDLE = ROOT / "build" / "redoc" / f"redoc-{VERSION}.standalone.js"


class IntegrityError(RuntimeError):
    """The tarball npm handed over is not the pinned one."""


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def extract(tarball: bytes, destination: pathlib.Path) -> None:
    """Writes the standalone bundle of a verified tarball to `destination` (atomically: a crash leaves none)."""
    if integrity_of(tarball) != INTEGRITY:
        raise IntegrityError(f"redoc {VERSION}: tarball integrity {integrity_of(tarball)} != pinned {INTEGRITY}")
    with tempfile.TemporaryDirectory() as scratch:
        archive = pathlib.Path(scratch) / "redoc.tgz"
        archive.write_bytes(tarball)
        with tarfile.open(archive) as tar:
            member = tar.extractfile(MEMBER)
            if member is None:
                raise IntegrityError(f"redoc {VERSION}: no {MEMBER} in the package")
            bundle = member.read()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial")
    partial.write_bytes(bundle)
    partial.replace(destination)


def ensure() -> pathlib.Path:
    """The bundle's path, fetching and verifying it first when it is not there yet."""
    if BUNDLE.exists():
        return BUNDLE
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            ["npm", "pack", f"redoc@{VERSION}", "--pack-destination", scratch, "--silent"],
            check=True,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
        )
        (tarball,) = pathlib.Path(scratch).glob("redoc-*.tgz")
        extract(tarball.read_bytes(), BUNDLE)
    return BUNDLE


if __name__ == "__main__":
    print(ensure(), file=sys.stdout)
