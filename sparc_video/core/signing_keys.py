"""Reading the Ed25519 keys of export manifests: the private key that signs them
(MANIFEST_SIGNING_KEY) and public keys that verify them (MANIFEST_RETIRED_KEYS, key files).

Here in core so settings can check a configured key at start; signing and verifying are
`sparc_video.evidence.signing`.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def parse_private_key(text: str | bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or base64 of its 32-byte seed; ValueError
    saying what is wrong otherwise."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"is not a readable unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"is a {type(key).__name__}, not an Ed25519 key")
        return key
    try:
        seed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ValueError(
            "is neither a PEM Ed25519 private key nor 32 bytes in base64; make one with "
            "`openssl genpkey -algorithm ed25519`"
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def parse_public_key(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of its 32 bytes."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"is not a readable PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"is a {type(key).__name__}, not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("is neither a PEM Ed25519 public key nor 32 bytes in base64")
    return Ed25519PublicKey.from_public_bytes(raw)


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
