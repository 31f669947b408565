from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparc_video.api.exports.requests import parse_size_bytes
from sparc_video.core.settings import Settings, SettingsError, markdown, parse_size, reveal
from sparc_video.core.settings.fields import spec
from sparc_video.database.pool import POOL_MAX_SIZE, SLOW_QUERY_S


@pytest.mark.parametrize(
    ("text", "size"),
    [("5GB", 5_000_000_000), ("512MiB", 536_870_912), ("1024", 1024), ("1.5 gb", 1_500_000_000)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.storage_backend == "local"
    assert (settings.grpc_port, settings.http_port) == (50051, 8080)


def test_reads_every_variable() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://redis:6379/3",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "S3_BUCKET": "videos",
            "S3_ENDPOINT_URL": "http://minio:9000",
            "CLOUDFRONT_DOMAIN": "d123.cloudfront.net",
            "VIDEO_WORKER_CONCURRENCY": "4",
            "VIDEO_TEMP_DIR": "/scratch",
            "MAX_VIDEO_UPLOAD_SIZE": "2GB",
            "VIDEO_PROCESSING_TIMEOUT": "60000",
            "GRPC_PORT": "6000",
            "HTTP_PORT": "6001",
        }
    )
    assert settings.redis_url == "redis://redis:6379/3"
    assert settings.storage_backend == "s3" and settings.s3_bucket == "videos"
    assert settings.worker_concurrency == 4
    assert settings.temp_dir == Path("/scratch")
    assert settings.max_upload_size == 2_000_000_000
    assert settings.processing_timeout_ms == 60000
    assert (settings.grpc_port, settings.http_port) == (6000, 6001)
    assert "secret" not in repr(settings)


def test_reports_every_bad_variable_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "GRPC_PORT": "http",
                "MAX_VIDEO_UPLOAD_SIZE": "lots",
                "VIDEO_WORKER_CONCURRENCY": "0",
                "REDIS_URL": "localhost:6379",
            }
        )
    message = str(info.value)
    for name in ("GRPC_PORT", "MAX_VIDEO_UPLOAD_SIZE", "VIDEO_WORKER_CONCURRENCY", "REDIS_URL"):
        assert name in message


def test_confinement_and_limit_variables() -> None:
    settings = Settings.from_env(
        {
            "SOURCE_KEY_PREFIXES": "uploads/, nvr/cam-1/",
            "CAMERA_ALLOWED_NETWORKS": "10.9.0.0/16,fd00::/8",
            "DOWNLOAD_URL_TTL": "600",
            "DOWNLOAD_URL_MAX_TTL": "3600",
            "MAX_FRAME_PIXELS": "8294400",
            "MAX_SOURCE_DURATION": "7200",
            "MAX_EXPORT_OPERATIONS": "8",
            "MAX_EXPORT_THUMBNAILS": "50",
            "GRPC_MAX_MESSAGE_SIZE": "1MiB",
        }
    )
    assert settings.source_key_prefixes == ("uploads/", "nvr/cam-1/")
    assert settings.camera_allowed_networks == ("10.9.0.0/16", "fd00::/8")
    assert (settings.download_url_ttl_s, settings.download_url_max_ttl_s) == (600, 3600)
    assert settings.max_frame_pixels == 3840 * 2160
    assert settings.max_source_duration_s == 7200.0
    assert (settings.max_export_operations, settings.max_export_thumbnails) == (8, 50)
    assert settings.grpc_max_message_bytes == 1024**2
    defaults = Settings()
    assert (defaults.download_url_ttl_s, defaults.download_url_max_ttl_s) == (900, 86400)
    assert defaults.source_key_prefixes == () and defaults.camera_allowed_networks == ()


def test_bad_confinement_variables_are_named() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "SOURCE_KEY_PREFIXES": "ok/,../up/",
                "CAMERA_ALLOWED_NETWORKS": "10.0.0.0/8,intranet",
                "DOWNLOAD_URL_TTL": "7200",
                "DOWNLOAD_URL_MAX_TTL": "3600",
                "MAX_EXPORT_OPERATIONS": "17",
                "GRPC_MAX_MESSAGE_SIZE": "1KB",
            }
        )
    message = str(info.value)
    assert "SOURCE_KEY_PREFIXES: '../up/'" in message
    assert "CAMERA_ALLOWED_NETWORKS: 'intranet' is not a CIDR" in message
    assert "DOWNLOAD_URL_TTL=7200 is above DOWNLOAD_URL_MAX_TTL=3600" in message
    assert "MAX_EXPORT_OPERATIONS=17" in message
    assert "GRPC_MAX_MESSAGE_SIZE=1000" in message


def test_secrets_from_files(tmp_path: Path) -> None:
    values = {
        "AWS_ACCESS_KEY_ID": "AKIAFROMFILE",
        "AWS_SECRET_ACCESS_KEY": "secret-from-file",
        "LOCAL_STORAGE_SIGNING_KEY": "signing-from-file",
        "CLOUDFRONT_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA KEY-----\n",
    }
    env = {"AWS_SECRET_ACCESS_KEY": "from-the-environment"}
    for name, value in values.items():
        (tmp_path / name).write_text(value + ("" if name.startswith("CLOUD") else "\n"))
        env[f"{name}_FILE"] = str(tmp_path / name)
    settings = Settings.from_env(env)
    assert reveal(settings.aws_access_key_id) == "AKIAFROMFILE"
    assert reveal(settings.aws_secret_access_key) == "secret-from-file"  # the file wins
    assert reveal(settings.local_signing_key) == "signing-from-file"
    assert reveal(settings.cloudfront_private_key) == values["CLOUDFRONT_PRIVATE_KEY"]
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "missing"),
                "LOCAL_STORAGE_SIGNING_KEY_FILE": str(tmp_path / "empty"),
            }
        )
    message = str(info.value)
    assert "AWS_SECRET_ACCESS_KEY_FILE: cannot read" in message
    assert "LOCAL_STORAGE_SIGNING_KEY_FILE:" in message and "is empty" in message


@pytest.mark.parametrize(
    ("text", "size"),
    [("500k", 500_000), ("25MB", 25_000_000), ("10MiB", 10 * 1024**2), ("2 TiB", 2 * 1024**4)],
)
def test_one_size_grammar_for_settings_and_requests(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert Settings.from_env({"MAX_VIDEO_UPLOAD_SIZE": text}).max_upload_size == size
    if 10_000 <= size <= 100_000_000_000:
        assert parse_size_bytes(text) == size
    for bad in ("lots", "5 XB", "-1", ""):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)


def test_every_setting_is_declared_whole() -> None:
    names = [spec(field).env for field in Settings.model_fields.values()]
    assert len(names) == len(set(names))
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert spec(field).env.isupper(), name


def test_configuration_reference_is_generated() -> None:
    """docs/configuration.md is what `python -m sparc_video.core.settings --markdown` prints."""
    path = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    assert path.read_text() == markdown(), (
        "docs/configuration.md is stale: run "
        "`python -m sparc_video.core.settings --markdown > docs/configuration.md`"
    )
    for field in Settings.model_fields.values():
        assert f"| `{spec(field).env}` |" in markdown()


@pytest.mark.parametrize("command", [[], ["serve"], ["worker"], ["dev"]])
def test_help_lists_every_setting(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparc_video.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for field in Settings.model_fields.values():
        assert re.search(rf"\b{spec(field).env}\b", result.stdout), spec(field).env


def test_every_variable_is_read() -> None:
    """Each variable reaches its attribute: a declared name the source skipped would fail."""
    for name, field in Settings.model_fields.items():
        about = spec(field)
        if about.read or about.file or field.annotation not in (int, float, str):
            continue
        value = {int: "7", float: "7", str: "redis://x"}[field.annotation]  # type: ignore[index]
        try:
            settings = Settings.from_env({about.env: value})
        except SettingsError as exc:
            assert about.env in str(exc)
            continue
        assert getattr(settings, name) != getattr(Settings(), name), about.env


def test_replace_validates() -> None:
    settings = Settings().replace(grpc_port=6000)
    assert settings.grpc_port == 6000 and settings.http_port == 8080
    with pytest.raises(SettingsError, match="DOWNLOAD_URL_TTL=7200 is above"):
        settings.replace(download_url_ttl_s=7200, download_url_max_ttl_s=3600)
    with pytest.raises(SettingsError, match="GRPC_PORT=70000 must be between 0 and 65535"):
        settings.replace(grpc_port=70000)


def test_database_pool_settings() -> None:
    settings = Settings.from_env({"DATABASE_POOL_MAX_SIZE": "25", "DATABASE_SLOW_QUERY": "0.05"})
    assert (settings.database_pool_max_size, settings.database_slow_query_s) == (25, 0.05)
    # open_database's own defaults (for callers without settings) are these settings' defaults.
    defaults = Settings()
    assert (defaults.database_pool_max_size, defaults.database_slow_query_s) == (
        POOL_MAX_SIZE,
        SLOW_QUERY_S,
    )
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"DATABASE_POOL_MAX_SIZE": "0", "DATABASE_SLOW_QUERY": "soon"})
    message = str(info.value)
    assert "DATABASE_POOL_MAX_SIZE=0 must be between 1 and 1000" in message
    assert "DATABASE_SLOW_QUERY='soon'" in message
