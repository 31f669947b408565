"""Reading the Ed25519 private key that signs export manifests (MANIFEST_SIGNING_KEY).

Here in core so settings can check a configured key at start; signing and verifying are
`sparc_video.evidence.signing`.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


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
