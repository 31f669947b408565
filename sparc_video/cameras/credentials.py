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
import logging
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from sparc_video.core import key_files
from sparc_video.core.errors import FailedPrecondition
from sparc_video.core.settings import Settings, parse_fernet_keys
from sparc_video.security.stream_urls import StreamSecrets

log = logging.getLogger(__name__)

KEY_FILE = ".camera-credentials-key"


class CredentialsUnreadable(FailedPrecondition):
    """Stored secrets cannot be decrypted: the key changed, or the record was tampered with."""

    reason = "CREDENTIALS_UNREADABLE"


class CredentialCipher:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialCipher:
        if settings.camera_credentials_key:
            return cls(parse_fernet_keys(settings.camera_credentials_key.get_secret_value()))
        if settings.s3_bucket:
            log.warning(
                "CAMERA_CREDENTIALS_KEY is not set: camera credentials are encrypted with a key "
                "kept in %s; servers that do not share that directory cannot read them",
                settings.local_storage_dir,
            )
        return cls([_load_or_create_key(settings.local_storage_dir / KEY_FILE)])

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


def _load_or_create_key(path: Path) -> bytes:
    key_files.load_or_create(path, lambda: Fernet.generate_key() + b"\n")
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    text = path.read_text("ascii").strip()
    try:
        return parse_fernet_keys(text)[0]
    except ValueError as exc:
        raise RuntimeError(f"the camera credentials key file {path} is damaged: {exc}") from None
