"""Stream URLs: what is accepted, how secrets are split off, redacted, kept and put back, and how
they are encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from sparc_video.cameras.credentials import CredentialCipher, CredentialsUnreadable
from sparc_video.cameras.service import Credentials, merge_secrets
from sparc_video.core.errors import InvalidArgument
from sparc_video.core.settings import Settings, SettingsError, reveal
from sparc_video.security.stream_urls import (
    StreamSecrets,
    compose,
    display_url,
    parse_stream_url,
    redact_text,
    scrub,
)


def test_user_information_and_secret_query_values_are_split_off_and_put_back() -> None:
    url = "rtsp://admin:p%40ss:w0rd@Cam-7.site.local:8554/Streaming/101?channel=1&pwd=s3cr%20t"
    parsed = parse_stream_url(url)
    assert parsed.public_url == "rtsp://Cam-7.site.local:8554/Streaming/101?channel=1&pwd=***"
    assert (parsed.username, parsed.password) == ("admin", "p@ss:w0rd")
    assert parsed.query_secrets == {"pwd": "s3cr%20t"}
    assert parsed.origin == "rtsp://cam-7.site.local:8554"
    secrets = StreamSecrets(parsed.username or "", parsed.password or "", parsed.query_secrets)
    assert compose(parsed.public_url, secrets) == (
        "rtsp://admin:p%40ss%3Aw0rd@Cam-7.site.local:8554/Streaming/101?channel=1&pwd=s3cr%20t"
    )
    assert display_url(parsed.public_url, True) == (
        "rtsp://***@Cam-7.site.local:8554/Streaming/101?channel=1&pwd=***"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://user:hunter2@host/x", "scheme must be one of rtsp, rtsps, http, https"),
        ("file:///etc/passwd", "scheme must be one of"),
        ("rtsp:///stream", "names no host"),
        ("rtsp://user:hunter2@:554/x", "names no host"),
        ("http://host:99999/x", "is not a URL"),
        ("rtsp://user:hun/ter2@host/x", "is not a URL"),
        ("http://host/a b", "spaces or control characters"),
        ("rtsp://" + "a" * 2050, "at most 2048"),
    ],
)
def test_bad_urls_are_refused_without_echoing_secrets(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        parse_stream_url(url)
    assert "hunter2" not in str(info.value) and "hun/ter2" not in str(info.value)


def test_messages_are_redacted_and_scrubbed() -> None:
    message = "opening rtsp://admin:hunter2@10.0.0.7/s?token=abc123&x=1 failed; auth=hunter2"
    assert (
        redact_text(message) == "opening rtsp://***@10.0.0.7/s?token=***&x=1 failed; auth=hunter2"
    )
    secrets = StreamSecrets("admin", "hunter2", {"token": "abc123"})
    assert "hunter2" not in scrub(message, secrets)
    assert "abc123" not in scrub("echo abc123", secrets)


def test_stored_secrets_are_kept_for_the_same_host_and_dropped_for_another() -> None:
    stored = StreamSecrets("admin", "hunter2", {"pwd": "x"})
    current = "rtsp://cam.local/s1?pwd=***"
    # Sent back as read (redacted): everything is kept.
    public, kept = merge_secrets(
        current, lambda: stored, parse_stream_url("rtsp://***@cam.local:554/s2?pwd=***"), None
    )
    assert public == "rtsp://cam.local:554/s2?pwd=***" and kept == stored
    # Another host: the stored log-in must not follow the camera there.
    public, moved = merge_secrets(current, lambda: stored, parse_stream_url("rtsp://evil/s"), None)
    assert moved == StreamSecrets() and public == "rtsp://evil/s"
    with pytest.raises(InvalidArgument, match="no log-in is stored for rtsp://evil:554"):
        merge_secrets(current, lambda: stored, parse_stream_url("rtsp://***@evil/s"), None)
    with pytest.raises(InvalidArgument, match="no value is stored"):
        merge_secrets(current, lambda: stored, parse_stream_url("rtsp://evil/s?pwd=***"), None)
    # New credentials replace the log-in; both forms at once are refused.
    _, replaced = merge_secrets(current, lambda: stored, None, Credentials("ops", "new"))
    assert (replaced.username, replaced.password, replaced.query) == ("ops", "new", {"pwd": "x"})
    with pytest.raises(InvalidArgument, match="not both"):
        merge_secrets(
            current, lambda: stored, parse_stream_url("rtsp://a:b@cam.local/"), Credentials("c", "")
        )


def test_secrets_are_encrypted_bound_to_their_camera_and_keys_rotate(tmp_path: Path) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    secrets = StreamSecrets("admin", "hunter2", {"pwd": "x"})
    token = CredentialCipher([old_key]).encrypt("cam-1", secrets)
    assert "hunter2" not in token and "admin" not in token
    rotated = CredentialCipher([new_key, old_key])
    assert rotated.decrypt("cam-1", token) == secrets
    with pytest.raises(CredentialsUnreadable):
        rotated.decrypt("cam-2", token)
    with pytest.raises(CredentialsUnreadable):
        CredentialCipher([new_key]).decrypt("cam-1", token)
    # Without a configured key, one is created once in the storage root and reused.
    settings = Settings(local_storage_dir=tmp_path / "storage")
    first = CredentialCipher.from_settings(settings).encrypt("cam-1", secrets)
    assert CredentialCipher.from_settings(settings).decrypt("cam-1", first) == secrets
    key_file = tmp_path / "storage" / ".camera-credentials-key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_the_key_setting_is_validated(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    env = {"CAMERA_CREDENTIALS_KEY": f"{key}, {Fernet.generate_key().decode()}"}
    assert reveal(Settings.from_env(env).camera_credentials_key) == env["CAMERA_CREDENTIALS_KEY"]
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    from_file = Settings.from_env({"CAMERA_CREDENTIALS_KEY_FILE": str(key_file)})
    assert reveal(from_file.camera_credentials_key) == key
    with pytest.raises(SettingsError, match="CAMERA_CREDENTIALS_KEY: key 1 is not 32 bytes"):
        Settings.from_env({"CAMERA_CREDENTIALS_KEY": "too-short"})
    assert "camera_credentials_key" not in repr(from_file.replace())
