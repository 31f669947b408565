"""Checking a downloaded export bundle offline: the manifest, its signature and the outputs.

A bundle is what `sparc-video export download` writes: the outputs, `manifest.json` and
`manifest.json.sig` in one folder (for `exports/{id}/{attempt}/...` keys, `DIR/{attempt}/`).
The checks run in a fixed order and stop at the first failure, which names what failed:

1. the manifest and its signature file exist (MissingFile);
2. the signature was made by the key given (UnknownKey) and verifies over the manifest's exact
   bytes (BadSignature): the manifest is what the service wrote;
3. every output the manifest lists exists (MissingFile) with the size and SHA-256 it records
   (HashMismatch).

Imports no server code: investigators run it with only the client installed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sparc_video.core.file_hashes import file_digest
from sparc_video.evidence import signing

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"


class BundleError(Exception):
    """The bundle does not check out; the message names the first thing that failed."""


class MissingFile(BundleError):
    pass


class BadSignature(BundleError):
    pass


class UnknownKey(BundleError):
    pass


class HashMismatch(BundleError):
    pass


@dataclass(frozen=True)
class VerifiedFile:
    path: Path
    storage_key: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class VerifiedBundle:
    manifest_path: Path
    manifest: dict[str, Any]
    key_id: str
    files: list[VerifiedFile]


def find_manifest(directory: Path) -> Path:
    """DIR/manifest.json, or the one DIR/*/manifest.json (`export download` keeps the
    attempt folder of the keys)."""
    direct = directory / MANIFEST_NAME
    if direct.is_file():
        return direct
    found = sorted(directory.glob(f"*/{MANIFEST_NAME}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise MissingFile(f"no {MANIFEST_NAME} in {directory} or the folders in it")
    names = ", ".join(str(p) for p in found)
    raise BundleError(f"several manifests in {directory} ({names}); give the folder of one")


def verify_bundle(
    directory: Path, keys: Ed25519PublicKey | Mapping[str, Ed25519PublicKey]
) -> VerifiedBundle:
    """Check the manifest's signature with the key it names among `keys` (the service's
    current and retired keys, by id), then every output's size and SHA-256."""
    manifest_path = find_manifest(directory)
    signature_path = manifest_path.with_name(SIGNATURE_NAME)
    data = manifest_path.read_bytes()
    try:
        signature_bytes = signature_path.read_bytes()
    except FileNotFoundError:
        raise MissingFile(f"{signature_path}: the manifest's signature is missing") from None
    try:
        public_key = signing.verify(data, signing.Signature.from_bytes(signature_bytes), keys)
    except signing.UnknownKeyError as exc:
        raise UnknownKey(f"{signature_path}: {exc}") from None
    except signing.SignatureError as exc:
        raise BadSignature(f"{signature_path}: {exc}") from None
    # Signed by the service, so well formed unless the key signed something else; and even then
    # a manifest must never lead the verifier outside its folder.
    try:
        manifest: dict[str, Any] = json.loads(data)
        prefix = str(manifest["storage_prefix"])
        entries = [
            (str(e["storage_key"]), int(e["size_bytes"]), str(e["sha256"]))
            for e in manifest["outputs"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path} is signed but not a manifest: {exc!r}") from None
    files = []
    for key, size_bytes, sha256 in entries:
        path = manifest_path.parent.joinpath(*_relative_parts(key, prefix))
        files.append(_check_output(path, key, size_bytes, sha256))
    return VerifiedBundle(manifest_path, manifest, signing.key_id(public_key), files)


def _relative_parts(key: str, prefix: str) -> list[str]:
    parts = key.removeprefix(prefix).split("/") if key.startswith(prefix) else []
    if not parts or any(part in ("", ".", "..") or "\\" in part for part in parts):
        raise BundleError(f"output key {key!r} is not inside the manifest's folder {prefix!r}")
    return parts


def _check_output(path: Path, key: str, size_bytes: int, sha256: str) -> VerifiedFile:
    try:
        size, actual = file_digest(path)
    except (FileNotFoundError, IsADirectoryError):
        raise MissingFile(f"{path}: output {key} is missing") from None
    if size != size_bytes:
        raise HashMismatch(f"{path}: {size} bytes, the manifest says {size_bytes}")
    if actual != sha256:
        raise HashMismatch(f"{path}: sha256 {actual}, the manifest says {sha256}")
    return VerifiedFile(path, key, size, sha256)
