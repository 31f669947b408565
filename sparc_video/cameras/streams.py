"""The stream a long-lived reader (the recorder) opens: the camera's URL with its credentials
composed in, as a probe or snapshot composes it (`service.py`). The reader checks the address
policy and pins the address right before it connects (`media.safe_open.pin_stream_url`)."""

from __future__ import annotations

from dataclasses import dataclass

from sparc_video.cameras.credentials import CredentialCipher
from sparc_video.cameras.records import CameraStore
from sparc_video.security.stream_urls import StreamSecrets, compose, display_url, scrub


@dataclass(frozen=True)
class CameraStream:
    camera_id: str
    # Credentials composed in: never log or show it.
    url: str
    # Safe to log and show.
    display_url: str
    secrets: StreamSecrets

    def scrub(self, text: str) -> str:
        """`text` without any of the stream's secrets (for errors from the stream)."""
        return scrub(text, self.secrets)


async def open_stream(store: CameraStore, cipher: CredentialCipher, camera_id: str) -> CameraStream:
    """The camera's stream; CameraNotFound, or CredentialsUnreadable where the stored secrets
    no longer decrypt."""
    record = await store.get_camera(camera_id)
    secrets = cipher.decrypt(record.id, record.secrets)
    return CameraStream(
        camera_id,
        compose(record.stream_url, secrets),
        display_url(record.stream_url, record.has_userinfo),
        secrets,
    )
