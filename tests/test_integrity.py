"""Evidence integrity: hashes recorded on stored objects, signed manifests, `sparc-video verify`
against real bundles, and the audit fields (case, purpose, download grants)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import duration_pb2, json_format
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.client import AsyncExportClient, ServiceError, thumbnail, transcode
from sparc_video.core import key_files
from sparc_video.core.errors import AlreadyExists, ObjectNotFound, Unavailable
from sparc_video.core.settings import Settings, SettingsError
from sparc_video.evidence import bundle, signing
from sparc_video.exports.event_log import EventKind
from sparc_video.exports.models import MAX_DOWNLOAD_GRANTS, DownloadGrant, ExportRecord
from sparc_video.observability.logs import Redactor, settings_secrets
from sparc_video.storage import LocalStorage, Storage
from tests.fixtures.s3 import s3_client
from tests.fixtures.service import RunningService, WorkerProcess, settings_env, start_service
from tests.test_cli import sparc_video
from tests.test_client import put_clip


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- hashes on the stored objects -------------------------------------------------------------


async def test_objects_carry_the_sha256_of_their_bytes(
    storage: Storage, backend_settings: Settings, tmp_path: Path
) -> None:
    small = os.urandom(70_000)
    big = os.urandom(12_000_000)
    (tmp_path / "big.bin").write_bytes(big)

    put = await storage.put_bytes("out/small.bin", small, "application/octet-stream")
    uploaded = await storage.upload_file(tmp_path / "big.bin", "out/big.bin", "video/mp4")
    assert put.sha256 == sha256(small)
    assert uploaded.sha256 == sha256(big)
    assert (await storage.stat("out/small.bin")).sha256 == sha256(small)
    assert (await storage.stat("out/big.bin")).sha256 == sha256(big)

    if backend_settings.s3_bucket:
        s3 = s3_client(str(backend_settings.s3_endpoint_url))
        bucket = backend_settings.s3_bucket
        # The user metadata. (S3's own ChecksumSHA256 is sent too, but moto 5 neither stores
        # nor checks it, so there is nothing to assert about it here.)
        head = s3.head_object(Bucket=bucket, Key="out/small.bin")
        assert head["Metadata"]["sha256"] == sha256(small)
        head = s3.head_object(Bucket=bucket, Key="out/big.bin")
        assert head["Metadata"]["sha256"] == sha256(big)
    else:
        folder = backend_settings.local_storage_dir / "out"
        assert (folder / ".small.bin.sha256").read_text() == sha256(small) + "\n"
        assert (folder / ".big.bin.sha256").read_text() == sha256(big) + "\n"
        await storage.delete_prefix("out/")
        # The sidecars go with their objects, and so does the emptied folder.
        assert not folder.exists()


async def test_local_upload_refuses_a_file_that_is_not_what_was_hashed(
    local_settings: Settings, tmp_path: Path
) -> None:
    storage = LocalStorage.from_settings(local_settings)
    (tmp_path / "clip.mp4").write_bytes(b"the bytes as they are now")
    with pytest.raises(Unavailable, match="changed while it was stored"):
        await storage.upload_file(
            tmp_path / "clip.mp4", "out/clip.mp4", "video/mp4", sha256=sha256(b"as hashed")
        )
    with pytest.raises(ObjectNotFound):
        await storage.stat("out/clip.mp4")
    leftovers = [p for p in (local_settings.local_storage_dir / "out").rglob("*")]
    assert leftovers == []


async def test_local_upload_links_a_file_given_up(local_settings: Settings, tmp_path: Path) -> None:
    """A file its caller gives up (a recorder's segment) becomes the object without a copy,
    hashed as it is read; one that is not what was hashed is refused all the same."""
    storage = LocalStorage.from_settings(local_settings)
    source = tmp_path / "segment.mp4"
    source.write_bytes(b"a finished segment")
    info = await storage.upload_file(source, "out/segment.mp4", "video/mp4", give_up=True)
    stored = local_settings.local_storage_dir / "out" / "segment.mp4"
    assert stored.stat().st_ino == source.stat().st_ino
    assert info.sha256 == sha256(b"a finished segment")
    assert (await storage.stat("out/segment.mp4")).sha256 == info.sha256
    with pytest.raises(Unavailable, match="changed while it was stored"):
        await storage.upload_file(
            source, "out/other.mp4", "video/mp4", sha256=sha256(b"x"), give_up=True
        )
    assert sorted(p.name for p in stored.parent.iterdir()) == [".segment.mp4.sha256", "segment.mp4"]


async def test_a_refused_upload_leaves_the_existing_hash(
    local_settings: Settings, tmp_path: Path
) -> None:
    storage = LocalStorage.from_settings(local_settings)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        yield data

    first = await storage.create_from_stream("up/a.mp4", chunks(b"first"), 5)
    assert first.sha256 == sha256(b"first")
    with pytest.raises(AlreadyExists):
        await storage.create_from_stream("up/a.mp4", chunks(b"other"), 5)
    assert (await storage.stat("up/a.mp4")).sha256 == sha256(b"first")


# --- keys -------------------------------------------------------------------------------------


def test_key_file_is_created_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "keys" / ".some-key"
    results: list[bytes] = []

    def load() -> None:
        results.append(key_files.load_or_create(path, lambda: os.urandom(16).hex().encode()))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [".some-key"]


def test_signing_key_from_pem_base64_file_or_the_storage_dir(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    expected = signing.key_id(private.public_key())
    (tmp_path / "key.pem").write_text(pem)
    for env in (
        {"MANIFEST_SIGNING_KEY": pem},
        {"MANIFEST_SIGNING_KEY": base64.b64encode(seed).decode()},
        {"MANIFEST_SIGNING_KEY_FILE": str(tmp_path / "key.pem")},
    ):
        settings = Settings.from_env(env)
        assert signing.ManifestSigner.from_settings(settings).key_id == expected

    with pytest.raises(SettingsError, match="MANIFEST_SIGNING_KEY: is neither a PEM"):
        Settings.from_env({"MANIFEST_SIGNING_KEY": "not a key"})
    with pytest.raises(SettingsError, match="MANIFEST_SIGNING_KEY_FILE: cannot read"):
        Settings.from_env({"MANIFEST_SIGNING_KEY_FILE": str(tmp_path / "missing.pem")})

    # Unset: one key, kept private in the local storage root, the same for every process.
    default = Settings(local_storage_dir=tmp_path / "storage")
    first = signing.ManifestSigner.from_settings(default)
    assert signing.ManifestSigner.from_settings(default).key_id == first.key_id
    assert first.key_id != expected and first.key_id.startswith("sha256:")
    key_file = tmp_path / "storage" / signing.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")


# --- manifests, end to end --------------------------------------------------------------------


async def finished_export(
    service: RunningService, client: AsyncExportClient, tmp_path: Path
) -> export_pb2.Export:
    await put_clip(service, tmp_path, "in/clip.mp4")
    created = await client.create_export(
        "in/clip.mp4",
        [
            transcode(codec="h264", resolution="160x90", preset="ultrafast"),
            thumbnail("50%", size="80x45"),
        ],
        case_id="CASE-2026-0042",
        purpose="Gate camera, break-in of 12 May\nfor the prosecutor",
    )
    assert created.case_id == "CASE-2026-0042"
    export = await client.wait_export(created.name)
    assert export.state == export_pb2.Export.STATE_SUCCEEDED, export.error
    return export


async def stored_bytes(service: RunningService, key: str, tmp_path: Path) -> bytes:
    path = tmp_path / "fetched" / key.replace("/", "_")
    await service.app.storage.download_file(key, path)
    return path.read_bytes()


async def test_manifest_is_signed_and_matches_the_stored_objects(
    backend_service_settings: Settings, tmp_path: Path
) -> None:
    async with (
        start_service(backend_service_settings) as service,
        AsyncExportClient(service.target) as client,
    ):
        export = await finished_export(service, client, tmp_path)
        prefix = f"{export.name}/{export.attempt}/"
        assert export.manifest.storage_key == prefix + "manifest.json"
        assert export.manifest.signature_storage_key == prefix + "manifest.json.sig"

        published = await client.get_manifest_signing_key()
        assert published.algorithm == "Ed25519"
        public_key = signing.parse_public_key(published.public_key_pem)
        assert signing.key_id(public_key) == published.key_id == export.manifest.key_id

        data = await stored_bytes(service, export.manifest.storage_key, tmp_path)
        envelope = await stored_bytes(service, export.manifest.signature_storage_key, tmp_path)
        assert sha256(data) == export.manifest.sha256
        assert sha256(envelope) == export.manifest.signature_sha256
        signing.verify(data, signing.Signature.from_bytes(envelope), public_key)
        manifest: dict[str, Any] = json.loads(data)
        # Canonical: the bytes are the sorted, compact serialisation of what they hold.
        assert signing.canonical_json(manifest) == data

        assert manifest["export"] == export.name and manifest["attempt"] == export.attempt
        assert manifest["case_id"] == "CASE-2026-0042"
        assert manifest["purpose"] == "Gate camera, break-in of 12 May\nfor the prosecutor"
        # Without authentication every caller is the local admin principal.
        assert manifest["requester"] == "local" == export.requester
        source = await stored_bytes(service, "in/clip.mp4", tmp_path)
        assert manifest["sources"] == [
            {"storage_key": "in/clip.mp4", "size_bytes": len(source), "sha256": sha256(source)}
        ]
        assert manifest["gaps"] == []
        # The operations as the API returns them (defaults filled in), in proto JSON.
        assert manifest["operations"] == [
            {"transcode": {"codec": "h264", "resolution": "160x90", "preset": "ultrafast"}},
            {"thumbnail": {"timestamps": ["50%"], "size": "80x45", "format": "FORMAT_JPEG"}},
        ]
        assert manifest["operations"] == [
            json_format.MessageToDict(op, preserving_proto_field_name=True)
            for op in export.operations
        ]
        assert manifest["signing_key_id"] == published.key_id
        assert manifest["worker_id"] and manifest["service_version"]
        assert manifest["end_time"].endswith("Z") and manifest["create_time"].endswith("Z")
        assert [o["storage_key"] for o in manifest["outputs"]] == [
            o.storage_key for o in export.outputs
        ]
        for entry, output in zip(manifest["outputs"], export.outputs, strict=True):
            stored = await stored_bytes(service, output.storage_key, tmp_path)
            assert entry["sha256"] == output.sha256 == sha256(stored)
            assert entry["size_bytes"] == output.size_bytes == len(stored)
            # The hash recorded on the object itself (S3 metadata, local sidecar).
            assert (await service.app.storage.stat(output.storage_key)).sha256 == output.sha256
        if backend_service_settings.s3_bucket:
            s3 = s3_client(str(backend_service_settings.s3_endpoint_url))
            for output in export.outputs:
                head = s3.head_object(
                    Bucket=backend_service_settings.s3_bucket, Key=output.storage_key
                )
                assert head["Metadata"]["sha256"] == output.sha256


async def test_download_then_verify_round_trip_and_tampering(
    backend_service_settings: Settings, tmp_path: Path
) -> None:
    async with (
        start_service(backend_service_settings) as service,
        AsyncExportClient(service.target) as client,
    ):
        export = await finished_export(service, client, tmp_path)
        target = ("--target", service.target)
        bundle = tmp_path / "bundle"
        fetched = await sparc_video("export", "download", export.name, "-o", str(bundle), *target)
        assert fetched.rc == 0, fetched.stderr
        folder = bundle / str(export.attempt)
        assert (folder / "manifest.json").is_file() and (folder / "manifest.json.sig").is_file()

        # The key from the server, or offline from a file.
        online = await sparc_video("verify", str(bundle), *target)
        assert online.rc == 0, online.stderr
        assert online.stdout.startswith(f"valid: {export.name}: signature by sha256:")
        published = await client.get_manifest_signing_key()
        key_file = tmp_path / "service.pub"
        key_file.write_text(published.public_key_pem)
        offline = await sparc_video(
            "verify", str(folder), "--public-key", str(key_file), "--format", "json", *target
        )
        assert offline.rc == 0, offline.stderr
        assert offline.json["valid"] is True and offline.json["keyId"] == published.key_id
        assert len(offline.json["files"]) == len(export.outputs)

    # From here on, no server: everything is checked offline.
    async def verify() -> tuple[int, str]:
        result = await sparc_video("verify", str(bundle), "--public-key", str(key_file))
        return result.rc, result.stderr

    video = folder / export.outputs[0].storage_key.rsplit("/", 1)[-1]
    original = video.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    video.write_bytes(bytes(flipped))
    rc, err = await verify()
    assert rc == 10 and "INVALID" in err and str(video) in err and "sha256" in err
    video.unlink()
    rc, err = await verify()
    assert rc == 9 and str(video) in err and "missing" in err
    video.write_bytes(original)
    assert (await verify())[0] == 0

    manifest_path = folder / "manifest.json"
    manifest_bytes = manifest_path.read_bytes()
    manifest_path.write_bytes(manifest_bytes.replace(b"CASE-2026-0042", b"CASE-2026-0043"))
    rc, err = await verify()
    assert rc == 7 and "does not match the manifest" in err
    manifest_path.write_bytes(manifest_bytes)

    signature_path = folder / "manifest.json.sig"
    envelope = json.loads(signature_path.read_bytes())
    raw = bytearray(base64.b64decode(envelope["signature"]))
    raw[0] ^= 0x01
    signature_path.write_text(json.dumps({**envelope, "signature": base64.b64encode(raw).decode()}))
    rc, err = await verify()
    assert rc == 7 and "does not match the manifest" in err

    other = tmp_path / "other.pub"
    other.write_text(signing.public_key_pem(Ed25519PrivateKey.generate().public_key()))
    result = await sparc_video("verify", str(bundle), "--public-key", str(other))
    assert result.rc == 8 and envelope["key_id"] in result.stderr

    signature_path.unlink()
    rc, err = await verify()
    assert rc == 9 and "signature is missing" in err


# --- audit ------------------------------------------------------------------------------------


async def test_case_id_and_purpose_are_validated(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        start_service(service_settings(), worker=False) as service,
        AsyncExportClient(service.target) as client,
    ):
        await put_clip(service, tmp_path, "in/clip.mp4")
        for case_id, purpose, field in (
            ("x" * 129, "", "export.case_id"),
            ("CASE\n1", "", "export.case_id"),
            ("", "y" * 1001, "export.purpose"),
            ("", "bell\x07", "export.purpose"),
        ):
            with pytest.raises(ServiceError) as caught:
                await client.create_export(
                    "in/clip.mp4", [thumbnail()], case_id=case_id, purpose=purpose
                )
            error = caught.value
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in error.field_violations] == [field]
        longest = await client.create_export(
            "in/clip.mp4", [thumbnail()], case_id="C" * 128, purpose="line one\nline two"
        )
        assert longest.case_id == "C" * 128 and longest.purpose == "line one\nline two"


async def test_every_download_url_issued_is_logged_without_its_signature(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        start_service(service_settings()) as service,
        AsyncExportClient(service.target) as client,
    ):
        export = await finished_export(service, client, tmp_path)
        assert list(export.download_grants) == []
        first = await client.get_export_download_url(export.name)
        second = await service.exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(
                name=export.name, ttl=duration_pb2.Duration(seconds=3600)
            )
        )
        logged = await client.get_export(export.name)

    grants = list(logged.download_grants)
    assert len(grants) == 2
    keys = [o.storage_key for o in export.outputs] + [
        export.manifest.storage_key,
        export.manifest.signature_storage_key,
    ]
    for grant, response in zip(grants, (first, second), strict=True):
        assert list(grant.storage_keys) == keys
        assert grant.expire_time == response.urls[0].expire_time
        assert grant.grant_time.seconds <= grant.expire_time.seconds
        assert [u.storage_key for u in response.urls] == keys[:-2]
        assert response.manifest_url.storage_key == export.manifest.storage_key
    assert grants[1].expire_time.seconds - grants[1].grant_time.seconds in (3599, 3600)
    # Nothing of any URL handed out (its query holds the signature) is kept on the export.
    recorded = logged.SerializeToString()
    for response in (first, second):
        links = [*response.urls, response.manifest_url, response.manifest_signature_url]
        for link in links:
            query = link.url.partition("?")[2]
            assert query and query.encode() not in recorded
            for part in query.split("&"):
                assert part.encode() not in recorded


async def test_download_grants_keep_the_newest(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        start_service(service_settings()) as service,
        AsyncExportClient(service.target) as client,
    ):
        export = await finished_export(service, client, tmp_path)
        export_id = export.name.removeprefix("exports/")

        def fill(record: ExportRecord) -> str:
            record.download_grants = [
                DownloadGrant(float(n), f"old-{n}", ("k",), float(n + 1))
                for n in range(MAX_DOWNLOAD_GRANTS)
            ]
            return EventKind.AUDIT

        await service.app.store.update(export_id, fill)
        await client.get_export_download_url(export.name)
        grants = (await client.get_export(export.name)).download_grants
    assert len(grants) == MAX_DOWNLOAD_GRANTS
    assert grants[0].requester == "old-1"
    assert grants[-1].storage_keys[0] == export.outputs[0].storage_key


def test_a_signed_manifest_cannot_lead_the_verifier_outside_its_folder(tmp_path: Path) -> None:
    signer = signing.ManifestSigner(Ed25519PrivateKey.generate())
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of any bundle")
    folder = tmp_path / "bundle" / "1"
    folder.mkdir(parents=True)
    prefix = "exports/0123456789abcdef0123/1/"
    for key in (prefix + "../../../secret.txt", "elsewhere/secret.txt"):
        data = signing.canonical_json(
            {
                "storage_prefix": prefix,
                "outputs": [{"storage_key": key, "size_bytes": 22, "sha256": "0" * 64}],
            }
        )
        (folder / "manifest.json").write_bytes(data)
        (folder / "manifest.json.sig").write_bytes(signer.sign(data).to_bytes())
        with pytest.raises(bundle.BundleError, match="not inside the manifest's folder") as caught:
            bundle.verify_bundle(tmp_path / "bundle", signer.public_key)
        assert type(caught.value) is bundle.BundleError


def test_the_signing_key_is_kept_out_of_logs() -> None:
    pem = signing.new_private_key_pem().decode()
    body = pem.splitlines()[1]
    redact = Redactor(settings_secrets(Settings(manifest_signing_key=pem)))
    assert body not in redact(f"loaded key {pem!r}")


def test_bundles_signed_before_a_rotation_verify_with_the_retired_key(tmp_path: Path) -> None:
    old = signing.ManifestSigner(Ed25519PrivateKey.generate())
    new = signing.ManifestSigner(Ed25519PrivateKey.generate(), retired=[old.public_key])
    stranger = signing.ManifestSigner(Ed25519PrivateKey.generate())
    assert list(new.verification_keys) == [new.key_id, old.key_id]
    assert new.is_retired(old.key_id) and not new.is_retired(new.key_id)
    for name, signer in (("old", old), ("new", new), ("stranger", stranger)):
        folder = tmp_path / name
        folder.mkdir()
        data = signing.canonical_json({"storage_prefix": "exports/x/1/", "outputs": []})
        (folder / "manifest.json").write_bytes(data)
        (folder / "manifest.json.sig").write_bytes(signer.sign(data).to_bytes())
    assert bundle.verify_bundle(tmp_path / "old", new.verification_keys).key_id == old.key_id
    assert bundle.verify_bundle(tmp_path / "new", new.verification_keys).key_id == new.key_id
    with pytest.raises(bundle.UnknownKey, match=stranger.key_id):
        bundle.verify_bundle(tmp_path / "stranger", new.verification_keys)
    # Before the rotation, the old key alone does not know the new one.
    with pytest.raises(bundle.UnknownKey):
        bundle.verify_bundle(tmp_path / "new", old.public_key)


def test_several_public_keys_parse_from_pem_blocks_or_base64() -> None:
    keys = [Ed25519PrivateKey.generate().public_key() for _ in range(3)]
    pems = "".join(signing.public_key_pem(key) for key in keys)
    raw = [
        base64.b64encode(
            key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode()
        for key in keys
    ]
    ids = [signing.key_id(key) for key in keys]
    assert [signing.key_id(k) for k in signing.parse_public_keys(pems)] == ids
    assert [signing.key_id(k) for k in signing.parse_public_keys(", ".join(raw))] == ids
    with pytest.raises(ValueError, match="outside its PEM blocks"):
        signing.parse_public_keys(pems + "junk")
    with pytest.raises(ValueError):
        signing.parse_public_keys("not-a-key")


def _new_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def test_serve_and_worker_refuse_to_start_without_a_signing_key(
    service_settings: Callable[..., Settings],
) -> None:
    env = {**os.environ, **settings_env(service_settings())}
    env.pop("MANIFEST_SIGNING_KEY")
    for command in ("serve", "worker"):
        result = await sparc_video(command, env=env)
        assert result.rc == 2, (command, result.stderr)
        assert "needs MANIFEST_SIGNING_KEY" in result.stderr, result.stderr


async def test_separate_server_and_worker_processes_sign_bundles_that_verify_across_a_rotation(
    s3_service_settings: Callable[..., Settings],
    worker_processes: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    """As the README's docker and Kubernetes deployments run it: the server and a worker in
    separate processes with separate data directories, sharing only S3, Redis and the key."""
    first_key, second_key = _new_key_pem(), _new_key_pem()
    base = s3_service_settings()
    bundles: list[tuple[Path, str]] = []
    for key, retired in ((first_key, None), (second_key, first_key)):
        retired_public = (
            signing.public_key_pem(signing.parse_private_key(retired).public_key())
            if retired
            else None
        )
        server_settings = base.replace(
            manifest_signing_key=key,
            manifest_retired_keys=retired_public,
            local_storage_dir=tmp_path / f"server-{len(bundles)}",
        )
        worker = worker_processes(
            server_settings.replace(local_storage_dir=tmp_path / f"worker-{len(bundles)}")
        )
        async with (
            start_service(server_settings, worker=False) as service,
            AsyncExportClient(service.target) as client,
        ):
            export = await finished_export(service, client, tmp_path)
            target = ("--target", service.target)
            bundle = tmp_path / f"bundle-{len(bundles)}"
            fetched = await sparc_video(
                "export", "download", export.name, "-o", str(bundle), *target
            )
            assert fetched.rc == 0, fetched.stderr
            bundles.append((bundle, export.manifest.key_id))
            # Every bundle so far verifies with what the server publishes now.
            for earlier, key_id in bundles:
                verified = await sparc_video("verify", str(earlier), *target)
                assert verified.rc == 0, verified.stderr
                assert f"signature by {key_id} ok" in verified.stdout
            published = await client.get_manifest_signing_key()
        worker.stop()
    (_, first_id), (_, second_id) = bundles
    assert first_id != second_id
    assert [(k.key_id, k.retired) for k in published.verification_keys] == [
        (second_id, False),
        (first_id, True),
    ]
