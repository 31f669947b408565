"""Both storage backends against real services: moto's S3 server, and files served over HTTP."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web

from sparc_video.core.errors import InvalidArgument, ObjectNotFound, ObjectTooLarge, Unavailable
from sparc_video.core.settings import Settings
from sparc_video.storage import LocalStorage, S3Storage, Storage, open_storage, validate_key
from sparc_video.storage.http_routes import local_download_routes
from tests.fixtures.s3 import MIB, free_port, s3_client
from tests.web_server import serving_app


@asynccontextmanager
async def serving(storage: LocalStorage, port: int) -> AsyncIterator[None]:
    """The HTTP server local-storage links point at, as the service runs it."""
    app = web.Application()
    app.add_routes(local_download_routes(storage))
    async with serving_app(app, port):
        yield


@pytest.fixture
async def served_storage(storage: Storage, backend_settings: Settings) -> AsyncIterator[Storage]:
    """The storage, with its links answered over HTTP (by moto, or by our routes)."""
    if not isinstance(storage, LocalStorage):
        yield storage
        return
    async with serving(storage, backend_settings.http_port):
        yield storage


@pytest.fixture
async def served_local(local_settings: Settings) -> AsyncIterator[LocalStorage]:
    storage = LocalStorage.from_settings(local_settings)
    async with serving(storage, local_settings.http_port):
        yield storage


async def fetch(url: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_stat_of_missing_key_is_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await storage.stat("in/missing.mp4")
    assert caught.value.key == "in/missing.mp4"


async def test_put_stat_download_roundtrip(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    info = await storage.put_bytes("in/clip.mp4", data, "video/mp4")
    assert (info.key, info.size_bytes) == ("in/clip.mp4", len(data))
    assert (await storage.stat("in/clip.mp4")).size_bytes == len(data)

    target = tmp_path / "work" / "source.mp4"
    assert await storage.download_file("in/clip.mp4", target) == len(data)
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["source.mp4"]


async def test_empty_objects_roundtrip(storage: Storage, tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    info = await storage.upload_file(empty, "in/empty.bin", "application/octet-stream")
    assert info.size_bytes == 0
    assert (await storage.stat("in/empty.bin")).size_bytes == 0
    target = tmp_path / "work" / "empty.bin"
    assert await storage.download_file("in/empty.bin", target) == 0
    assert target.read_bytes() == b""


async def test_download_refuses_objects_over_max_bytes(storage: Storage, tmp_path: Path) -> None:
    await storage.put_bytes("in/clip.mp4", b"x" * 1001, "video/mp4")
    target = tmp_path / "work" / "source.mp4"
    with pytest.raises(ObjectTooLarge) as caught:
        await storage.download_file("in/clip.mp4", target, max_bytes=1000)
    assert (caught.value.size_bytes, caught.value.max_bytes) == (1001, 1000)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    assert await storage.download_file("in/clip.mp4", target, max_bytes=1001) == 1001


async def test_download_of_missing_key_leaves_no_file(storage: Storage, tmp_path: Path) -> None:
    target = tmp_path / "work" / "source.mp4"
    with pytest.raises(ObjectNotFound):
        await storage.download_file("in/missing.mp4", target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


async def test_large_upload_and_download_keep_every_byte(
    storage: Storage, backend_settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "big.mp4"
    source.write_bytes(os.urandom(12_000_000))
    info = await storage.upload_file(source, "out/big.mp4", "video/mp4")
    assert info.size_bytes == 12_000_000

    copy = tmp_path / "copy" / "big.mp4"
    assert await storage.download_file("out/big.mp4", copy) == 12_000_000
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest

    if backend_settings.s3_bucket and backend_settings.s3_endpoint_url:
        head = s3_client(backend_settings.s3_endpoint_url).head_object(
            Bucket=backend_settings.s3_bucket, Key="out/big.mp4"
        )
        # A multipart object's ETag ends in "-<number of parts>": 5 MiB + 5 MiB + the rest.
        assert head["ETag"].strip('"').endswith("-3")
        assert head["ContentType"] == "video/mp4"


async def test_delete_prefix_deletes_only_that_prefix(storage: Storage) -> None:
    keys = ["exports/a/1.mp4", "exports/a/sub/2.jpg", "exports/ab/3.mp4", "exports/b/4.mp4"]
    for key in [*keys, "other/5.mp4"]:
        await storage.put_bytes(key, b"x", "application/octet-stream")

    assert await storage.delete_prefix("exports/a/") == 2
    for key in ["exports/a/1.mp4", "exports/a/sub/2.jpg"]:
        with pytest.raises(ObjectNotFound):
            await storage.stat(key)
    for key in ["exports/ab/3.mp4", "exports/b/4.mp4", "other/5.mp4"]:
        assert (await storage.stat(key)).size_bytes == 1

    # A prefix is a string prefix, as in S3, not a folder name.
    assert await storage.delete_prefix("exports/a") == 1
    assert await storage.delete_prefix("exports/a") == 0
    with pytest.raises(InvalidArgument):
        await storage.delete_prefix("")


@pytest.mark.parametrize("key", ["out/clip 1.mp4", "out/ünï cødé+%20&x=1#?.mp4"])
async def test_download_url_serves_the_object_over_http(served_storage: Storage, key: str) -> None:
    data = os.urandom(3000)
    await served_storage.put_bytes(key, data, "video/mp4")

    url = await served_storage.download_url(key, 60, filename="clip ü.mp4")
    status, body, headers = await fetch(url)
    assert status == 200
    assert body == data
    assert headers["Content-Type"] == "video/mp4"
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''clip%20%C3%BC.mp4" in headers["Content-Disposition"]

    status, body, _ = await fetch(await served_storage.download_url(key, 60))
    assert (status, body) == (200, data)


async def test_local_links_refuse_tampering_expiry_and_missing_objects(
    served_local: LocalStorage,
) -> None:
    served_storage = served_local
    await served_storage.put_bytes("out/a.mp4", b"video", "video/mp4")
    url = await served_storage.download_url("out/a.mp4", 60, filename="a.mp4")
    sig = parse_qs(urlsplit(url).query)["sig"][0]

    tampered = with_query(url, sig=("0" if sig[0] != "0" else "1") + sig[1:])
    altered = (403, b"the download link's signature does not match it: the link was altered\n")
    assert (await fetch(tampered))[:2] == altered
    assert (await fetch(with_query(url, filename="evil.html")))[:2] == altered
    assert (await fetch(url.replace("out/a.mp4", "out/b.mp4")))[:2] == altered
    expired = await fetch(await served_storage.download_url("out/a.mp4", -1))
    assert expired[:2] == (403, b"the download link has expired: ask for a new one\n")
    # As grpcurl prints it: JSON writes & as \u0026, so the query is one parameter.
    from_json = await fetch(url.replace("&", "\\u0026"))
    assert from_json[0] == 403 and from_json[1].startswith(b"the link is malformed: its `")
    assert b"\\u0026 where & belongs" in from_json[1]

    missing = await served_storage.download_url("out/never-written.mp4", 60)
    assert (await fetch(missing))[0] == 404
    assert (await fetch(url))[:2] == (200, b"video")


async def test_local_links_never_substitute_a_compressed_sibling(
    served_local: LocalStorage,
) -> None:
    served_storage = served_local
    await served_storage.put_bytes("out/a.mp4", b"the real video", "video/mp4")
    await served_storage.put_bytes("out/a.mp4.gz", b"another object", "application/gzip")
    url = await served_storage.download_url("out/a.mp4", 60)
    status, body, headers = await fetch(url, **{"Accept-Encoding": "gzip, br"})
    assert (status, body) == (200, b"the real video")
    assert "Content-Encoding" not in headers


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "/abs", "a/../b", "http://x", "a\x00b", "", "a\\b", "a//b", "a/"]
)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(ValueError) as caught:
        validate_key(key)
    assert str(caught.value)


def test_validate_key_limits_length_in_utf8_bytes() -> None:
    assert validate_key("ü" * 512) == "ü" * 512
    with pytest.raises(ValueError, match="1024 bytes"):
        validate_key("ü" * 513)


@pytest.mark.parametrize("key", ["in/clip.mp4", "a b/ü..c/x-1_2.mp4", "..a/b.."])
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


async def test_storage_refuses_invalid_keys(storage: Storage, tmp_path: Path) -> None:
    for call in (
        storage.stat("../etc/passwd"),
        storage.put_bytes("/abs", b"x", "text/plain"),
        storage.download_file("a/../b", tmp_path / "x"),
        storage.download_url("http://x", 60),
    ):
        with pytest.raises(InvalidArgument):
            await call


async def test_local_storage_stays_inside_its_root(local_settings: Settings) -> None:
    storage = LocalStorage.from_settings(local_settings)
    outside = storage.root.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (storage.root / "link").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="outside the storage directory"):
        await storage.stat("link/secret")
    # Its own files (signing key, files being written) are not objects.
    with pytest.raises(InvalidArgument, match="reserved"):
        await storage.stat(".signing-key")


async def test_local_signing_key_is_persisted_and_shared(local_settings: Settings) -> None:
    first = LocalStorage.from_settings(local_settings)
    key_file = first.root / ".signing-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    url = await first.download_url("out/a.mp4", 60, filename="a.mp4")
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}

    replica = LocalStorage.from_settings(local_settings)
    assert replica.links.verify_link("out/a.mp4", query["expires"], query["sig"], "a.mp4")
    assert not replica.links.verify_link("out/a.mp4", query["expires"], query["sig"], None)
    assert not replica.links.verify_link("out/a.mp4", "soon", query["sig"], "a.mp4")

    configured = local_settings.replace(local_signing_key="from-settings")
    other = LocalStorage.from_settings(configured)
    assert not other.links.verify_link("out/a.mp4", query["expires"], query["sig"], "a.mp4")


async def test_check_passes_on_a_usable_backend(storage: Storage) -> None:
    await storage.check()


async def test_check_reports_a_missing_bucket(s3_settings: Settings) -> None:
    missing = s3_settings.replace(s3_bucket="no-such-bucket-here")
    async with open_storage(missing) as storage:
        with pytest.raises(Unavailable, match="no-such-bucket-here"):
            await storage.check()


async def test_check_and_calls_report_an_unreachable_endpoint() -> None:
    # Nothing listens on a port just handed out and released.
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        s3_bucket="videos",
        s3_endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    storage = await S3Storage.open(settings, max_attempts=1)
    try:
        with pytest.raises(Unavailable, match=f"cannot reach S3 at {endpoint}"):
            await storage.check()
        with pytest.raises(Unavailable, match="cannot reach S3"):
            await storage.stat("in/clip.mp4")
    finally:
        await storage.aclose()


async def test_check_reports_a_missing_directory(local_settings: Settings) -> None:
    storage = LocalStorage.from_settings(local_settings)
    for path in storage.root.iterdir():
        path.unlink()
    storage.root.rmdir()
    with pytest.raises(Unavailable, match="does not exist"):
        await storage.check()


async def test_open_storage_picks_the_backend(
    s3_settings: Settings, local_settings: Settings
) -> None:
    async with open_storage(s3_settings) as s3:
        assert isinstance(s3, S3Storage)
        assert s3.backend_name == "s3"
        await s3.check()
    async with open_storage(local_settings) as local:
        assert isinstance(local, LocalStorage)
        assert local.backend_name == "local"
        await local.check()


async def test_cloudfront_domain_replaces_presigned_urls(s3_settings: Settings) -> None:
    settings = s3_settings.replace(cloudfront_domain="d111.cloudfront.net")
    async with open_storage(settings) as storage:
        url = await storage.download_url("exports/x/clip 1.mp4", 60, filename="clip 1.mp4")
    assert url == "https://d111.cloudfront.net/exports/x/clip%201.mp4"


async def test_delete_prefix_aborts_unfinished_multipart_uploads(s3_settings: Settings) -> None:
    """A worker killed mid-upload leaves parts behind; deleting the prefix removes them too."""
    assert s3_settings.s3_endpoint_url and s3_settings.s3_bucket
    client = s3_client(s3_settings.s3_endpoint_url)
    bucket = s3_settings.s3_bucket
    upload = client.create_multipart_upload(Bucket=bucket, Key="exports/x/1/video.mp4")
    client.upload_part(
        Bucket=bucket,
        Key="exports/x/1/video.mp4",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"p" * (5 * MIB),
    )
    other = client.create_multipart_upload(Bucket=bucket, Key="exports/y/1/video.mp4")
    store = await S3Storage.open(s3_settings)
    try:
        await store.delete_prefix("exports/x/")
    finally:
        await store.aclose()
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in left] == [other["UploadId"]]
    client.abort_multipart_upload(
        Bucket=bucket, Key="exports/y/1/video.mp4", UploadId=other["UploadId"]
    )


async def test_cloudfront_urls_are_signed_and_expire_with_a_key_pair(
    s3_settings: Settings,
) -> None:
    import base64
    import json
    import time
    from urllib.parse import parse_qs, urlsplit

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    settings = s3_settings.replace(
        cloudfront_domain="d111.cloudfront.net",
        cloudfront_key_pair_id="K2JCJMDEHXQW5F",
        cloudfront_private_key=pem,
    )
    store = await S3Storage.open(settings)
    try:
        url = await store.download_url("exports/x/clip 1.mp4", 600)
    finally:
        await store.aclose()
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "d111.cloudfront.net",
        "/exports/x/clip%201.mp4",
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["Key-Pair-Id"] == "K2JCJMDEHXQW5F"
    expires = int(query["Expires"])
    assert abs(expires - (time.time() + 600)) < 5
    # The signature verifies against CloudFront's canned policy with the public key.
    resource = url.split("?")[0]
    policy = json.dumps(
        {
            "Statement": [
                {"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
            ]
        },
        separators=(",", ":"),
    ).encode()
    signature = base64.b64decode(
        query["Signature"].replace("-", "+").replace("_", "=").replace("~", "/")
    )
    key.public_key().verify(signature, policy, padding.PKCS1v15(), hashes.SHA1())
