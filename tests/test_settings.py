from __future__ import annotations

from pathlib import Path

import pytest

from sparc_video.settings import Settings, SettingsError, parse_size


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
