"""Reading the Ed25519 keys of export manifests: the private key that signs them
(MANIFEST_SIGNING_KEY) and public keys that verify them (MANIFEST_RETIRED_KEYS, key files).

Here in core so settings can check a configured key at start; signing and verifying are
`sparc_video.evidence.signing`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import TypeVar, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

K = TypeVar("K", Ed25519PrivateKey, Ed25519PublicKey)


def _pem_or_base64(
    text: str | bytes,
    load_pem: Callable[[bytes], object],
    from_raw: Callable[[bytes], K],
    kind: type,
    what: str,
    hint: str = "",
) -> K:
    """A key from PEM, or base64 of its 32 raw bytes; ValueError saying what is wrong."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = load_pem(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"is not a readable {what}: {exc}") from None
        if not isinstance(key, kind):
            raise ValueError(f"is a {type(key).__name__}, not an Ed25519 key")
        return cast(K, key)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"is neither a {what} nor 32 bytes in base64{hint}")
    return from_raw(raw)


def parse_private_key(text: str | bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or base64 of its 32-byte seed; ValueError
    saying what is wrong otherwise."""
    return _pem_or_base64(
        text,
        lambda data: serialization.load_pem_private_key(data, password=None),
        Ed25519PrivateKey.from_private_bytes,
        Ed25519PrivateKey,
        "PEM Ed25519 private key",
        "; make one with `openssl genpkey -algorithm ed25519`",
    )


def parse_public_key(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of its 32 bytes."""
    return _pem_or_base64(
        text,
        serialization.load_pem_public_key,
        Ed25519PublicKey.from_public_bytes,
        Ed25519PublicKey,
        "PEM Ed25519 public key",
    )


_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.S)


def parse_public_keys(text: str | bytes) -> list[Ed25519PublicKey]:
    """Several public keys: concatenated PEM blocks, or base64 keys separated by commas or
    whitespace (MANIFEST_RETIRED_KEYS, a verifier's key file)."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    blocks = _PEM_BLOCK.findall(data)
    if blocks:
        rest = _PEM_BLOCK.sub(b"", data).strip()
        if rest:
            raise ValueError("holds text outside its PEM blocks")
        return [parse_public_key(block) for block in blocks]
    return [parse_public_key(part) for part in re.split(rb"[,\s]+", data.strip()) if part]
