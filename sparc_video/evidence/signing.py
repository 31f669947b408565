"""Ed25519 keys that sign export manifests, and their detached signatures.

The private key comes from MANIFEST_SIGNING_KEY (or _FILE): PEM (PKCS#8), or the raw 32-byte
seed in base64. Without it, a key file in the local storage root is used (created on first start,
mode 0600), which suits one machine (`sparc-video dev` keeps it in its data directory); servers
and workers on several machines must share a configured key.

A key is named by its id, `sha256:` and the hex SHA-256 of the raw 32-byte public key, so a
signature says which key made it and a verifier holding another key can say so instead of
reporting a forgery.

This module is also what `sparc-video verify` uses on the investigator's side: it imports no
server code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sparc_video.core.signing_keys import parse_private_key as parse_private_key
from sparc_video.core.signing_keys import parse_public_key as parse_public_key
from sparc_video.core.signing_keys import parse_public_keys as parse_public_keys

if TYPE_CHECKING:
    from sparc_video.core.settings import Settings


ALGORITHM = "Ed25519"
KEY_FILE = ".manifest-signing-key"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


class SignatureError(ValueError):
    """A detached signature does not verify (or cannot be read)."""


class UnknownKeyError(SignatureError):
    """The signature names a key other than the ones given to verify it."""


def keyring(keys: Ed25519PublicKey | Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Keys by id, in the order given (the current key first, then retired ones)."""
    if isinstance(keys, Ed25519PublicKey):
        keys = [keys]
    return {key_id(key): key for key in keys}


@dataclass(frozen=True)
class Signature:
    """A detached signature: `manifest.json.sig` holds it as JSON."""

    algorithm: str
    key_id: str
    signature: bytes

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "algorithm": self.algorithm,
                "key_id": self.key_id,
                "signature": base64.b64encode(self.signature).decode("ascii"),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        try:
            parsed = json.loads(data)
            return cls(
                algorithm=str(parsed["algorithm"]),
                key_id=str(parsed["key_id"]),
                signature=base64.b64decode(str(parsed["signature"]), validate=True),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise SignatureError(f"the signature file is not a signature envelope: {exc}") from None


def verify(
    data: bytes,
    signature: Signature,
    keys: Ed25519PublicKey | Mapping[str, Ed25519PublicKey],
) -> Ed25519PublicKey:
    """The key, among `keys`, whose signature over `data` `signature` is; UnknownKeyError when
    the signature names none of them, SignatureError when it does not verify."""
    if signature.algorithm != ALGORITHM:
        raise SignatureError(f"signature algorithm {signature.algorithm!r} is not {ALGORITHM}")
    ring = keyring(keys) if isinstance(keys, Ed25519PublicKey) else keys
    public_key = ring.get(signature.key_id)
    if public_key is None:
        given = ", ".join(ring) or "none"
        raise UnknownKeyError(
            f"the manifest was signed with key {signature.key_id}, not with the key(s) given "
            f"({given})"
        )
    try:
        public_key.verify(signature.signature, data)
    except InvalidSignature:
        raise SignatureError(
            "the signature does not match the manifest: the manifest or its signature was altered"
        ) from None
    return public_key


class ManifestSigner:
    """Signs manifests with the service's private key, and knows every key that verifies what
    the service signed: its own and the ones retired by rotation (still vouched for)."""

    def __init__(
        self, private_key: Ed25519PrivateKey, retired: Iterable[Ed25519PublicKey] = ()
    ) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)
        self.public_key_pem = public_key_pem(self.public_key)
        # The current key first; a retired key equal to it is not listed twice.
        self.verification_keys = keyring([self.public_key, *retired])

    def is_retired(self, kid: str) -> bool:
        return kid != self.key_id

    @classmethod
    def from_settings(cls, settings: Settings) -> ManifestSigner:
        # Imported here: the verifying side (the CLI) never creates keys.
        from sparc_video.core import key_files
        from sparc_video.core.settings import reveal

        return cls(
            key_files.configured_or_kept(
                reveal(settings.manifest_signing_key),
                settings.local_storage_dir / KEY_FILE,
                make=new_private_key_pem,
                parse=parse_private_key,
                variable="MANIFEST_SIGNING_KEY",
                what="manifest signing",
                shared=bool(settings.s3_bucket),
            ),
            retired=parse_public_keys(settings.manifest_retired_keys or ""),
        )

    def sign(self, data: bytes) -> Signature:
        return Signature(ALGORITHM, self.key_id, self._private_key.sign(data))


class SigningKeyNotConfigured(ValueError):
    """A server or worker outside `dev` would sign with a key of its own."""


def require_configured_key(settings: Settings, command: str) -> None:
    """Refuse to run `command` (serve, worker) without MANIFEST_SIGNING_KEY.

    A key kept in the process's own data directory is fine for `dev` (one process, one
    directory), but a server and workers in separate containers would each keep their own: the
    worker would sign bundles with a key the server never publishes, so they could not be
    verified. An evidence service must not hand those out.
    """
    if settings.manifest_signing_key is None:
        raise SigningKeyNotConfigured(
            f"`sparc-video {command}` needs MANIFEST_SIGNING_KEY (or MANIFEST_SIGNING_KEY_FILE), "
            "the same Ed25519 key for every server and worker, so each export's manifest is "
            "signed with the key the server publishes; make one with `openssl genpkey "
            "-algorithm ed25519`. (`sparc-video dev` keeps one in its data directory.)"
        )


def new_private_key_pem() -> bytes:
    """A fresh Ed25519 private key in PEM (PKCS8), as MANIFEST_SIGNING_KEY takes it."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def canonical_json(data: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8, no trailing newline.

    Signatures cover the bytes, so verification never depends on re-serialising; canonical
    output makes the bytes reproducible from the parsed manifest (e.g. to diff two exports).
    """
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def read_public_keys_file(path: Path) -> list[Ed25519PublicKey]:
    """The public keys in a file: one PEM key, or several (a rotated service's current and
    retired keys), concatenated."""
    try:
        return parse_public_keys(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path} {exc}") from None
