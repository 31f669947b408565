"""What an attempt stores: its outputs and its signed evidence manifest, under its own prefix.

Every object of an export lives under `exports/{id}/`, each attempt's under `exports/{id}/{n}/`,
so an attempt never overwrites another's and the one that succeeds can discard the others'.
The manifest (`manifest.json`) lists the sources as read, the gaps of a camera range, the
operations and every output with its size and SHA-256; its detached signature
(`manifest.json.sig`) names the key id. Both go up at once under the attempt's prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sparc_video.evidence import manifest
from sparc_video.exports.models import ExportRecord, ManifestRef, Output, OutputKind
from workers.job.context import WorkerContext
from workers.sandbox.child import ProducedFile


def output_prefix(export_id: str) -> str:
    """Every object an export writes lives under this prefix."""
    return f"exports/{export_id}/"


def attempt_prefix(export_id: str, attempt: int) -> str:
    return f"{output_prefix(export_id)}{attempt}/"


async def upload_outputs(
    worker: WorkerContext, produced: list[ProducedFile], prefix: str
) -> list[Output]:
    """Store each produced file under `prefix` with a name by its kind; the outputs as stored."""
    outputs: list[Output] = []
    thumbnail_number = 0
    for item in produced:
        if item.kind is OutputKind.VIDEO:
            key = f"{prefix}video{item.path.suffix or '.mp4'}"
        elif item.kind is OutputKind.SPRITE_SHEET:
            key = f"{prefix}sprite-{item.operation_index}{item.path.suffix}"
        else:
            thumbnail_number += 1
            suffix = item.path.suffix or ".jpg"
            key = f"{prefix}thumbnail-{item.operation_index}-{thumbnail_number:03d}{suffix}"
        # The storage hashes the file as it stores it, and records the hash on the object.
        info = await worker.storage.upload_file(item.path, key, item.content_type)
        outputs.append(
            Output.stored(item, storage_key=key, size_bytes=info.size_bytes, sha256=info.sha256)
        )
    return outputs


async def write_signed_manifest(
    worker: WorkerContext,
    record: ExportRecord,
    *,
    sources: Sequence[manifest.SourceEntry],
    outputs: list[Output],
    prefix: str,
    end_time: float,
) -> ManifestRef:
    signer = worker.signer
    data = manifest.render(
        manifest.build(
            record,
            manifest.ManifestContext(
                sources=list(sources),
                gaps=manifest.coverage_gaps(record),
                outputs=outputs,
                storage_prefix=prefix,
                end_time=end_time,
                worker_id=worker.worker_id,
                key_id=signer.key_id,
            ),
        )
    )
    storage = worker.storage
    # Both go up at once; each ends (stored or failed) before the first failure is raised.
    stored, signature = await asyncio.gather(
        storage.put_bytes(prefix + manifest.MANIFEST_NAME, data, "application/json"),
        storage.put_bytes(
            prefix + manifest.SIGNATURE_NAME, signer.sign(data).to_bytes(), "application/json"
        ),
        return_exceptions=True,
    )
    if isinstance(stored, BaseException):
        raise stored
    if isinstance(signature, BaseException):
        raise signature
    return ManifestRef(stored.key, stored.sha256, signature.key, signer.key_id, signature.sha256)
