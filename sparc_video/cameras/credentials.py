"""Encryption of camera secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key comes from CAMERA_CREDENTIALS_KEY (or _FILE): one or more Fernet keys separated by
commas, the first encrypting and all decrypting, so a key can be rotated by prepending a new
one. Without it, a key file in the local storage root is used (created on first start), which
suits one machine; replicas must share a configured key.

Each token also holds the camera id it was written for and is refused for any other camera, so
copying a token between records in Redis does not hand one camera's log-in to another.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from sparc_video.core import key_files
from sparc_video.core.errors import FailedPrecondition
from sparc_video.core.settings import Settings, parse_fernet_keys, reveal
from sparc_video.security.stream_urls import StreamSecrets

KEY_FILE = ".camera-credentials-key"


class CredentialsUnreadable(FailedPrecondition):
    """Stored secrets cannot be decrypted: the key changed, or the record was tampered with."""

    reason = "CREDENTIALS_UNREADABLE"


class CredentialCipher:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialCipher:
        keys = key_files.configured_or_kept(
            reveal(settings.camera_credentials_key),
            settings.local_storage_dir / KEY_FILE,
            make=lambda: Fernet.generate_key() + b"\n",
            parse=parse_fernet_keys,
            variable="CAMERA_CREDENTIALS_KEY",
            what="camera credentials",
            shared=bool(settings.s3_bucket),
        )
        return cls(keys)

    def encrypt(self, camera_id: str, secrets: StreamSecrets) -> str:
        """A token for the record; "" when there is nothing to keep."""
        if secrets.empty:
            return ""
        payload = {
            "camera": camera_id,
            "username": secrets.username,
            "password": secrets.password,
            "query": secrets.query,
        }
        return self._fernet.encrypt(json.dumps(payload).encode("utf-8")).decode("ascii")

    def decrypt(self, camera_id: str, token: str) -> StreamSecrets:
        if not token:
            return StreamSecrets()
        try:
            payload = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError):
            payload = None
        if not isinstance(payload, dict) or payload.get("camera") != camera_id:
            raise CredentialsUnreadable(
                f"the stored credentials of camera {camera_id} cannot be decrypted with "
                "CAMERA_CREDENTIALS_KEY (was the key replaced rather than rotated?); "
                "set them again with UpdateCamera"
            )
        return StreamSecrets(
            username=str(payload.get("username", "")),
            password=str(payload.get("password", "")),
            query={str(k): str(v) for k, v in dict(payload.get("query", {})).items()},
        )
