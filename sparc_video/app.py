"""The wiring of the service: `open_dependencies` makes what the server and the workers both use
(the PostgreSQL pool, storage, export records, the queue, the manifest signer), once for both;
`open_app` is the server's lifespan on top of it. Each opens every client once and closes them
in reverse order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool

from sparc_video.audit import AuditLog
from sparc_video.cameras.credentials import CredentialCipher
from sparc_video.cameras.recordings import Recordings
from sparc_video.cameras.records import CameraStore
from sparc_video.cameras.service import Cameras
from sparc_video.core.errors import Unavailable
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings, reveal
from sparc_video.database.migrations import require_current_schema
from sparc_video.database.pool import Database, open_database
from sparc_video.evidence.signing import ManifestSigner
from sparc_video.exports.events import EventHub
from sparc_video.exports.holds import RecordingHolds
from sparc_video.exports.queue import ExportQueue
from sparc_video.exports.records import ExportStore
from sparc_video.exports.service import Exports
from sparc_video.exports.sources import ExportSources
from sparc_video.live.hub import LiveHubs
from sparc_video.media.probe import MediaProber
from sparc_video.observability.metrics import StorageUsage
from sparc_video.recording.control import RecordingControl
from sparc_video.storage import ManagedStorage, Storage, open_storage
from sparc_video.uploads import Uploads, UploadStore


@dataclass(frozen=True)
class Dependencies:
    """What the server and every worker hold alike, made in one place."""

    keys: Keys
    storage: ManagedStorage
    store: ExportStore
    queue: ExportQueue
    signer: ManifestSigner
    uploads: Uploads
    # The system of record (DESIGN.md, "Where records live"). Its health check gates SERVING.
    database: Database


class DatabaseNotConfigured(Unavailable):
    """DATABASE_URL is unset where the service needs its system of record."""


@asynccontextmanager
async def open_configured_database(settings: Settings) -> AsyncIterator[Database]:
    """The pool at DATABASE_URL, once its schema is this version's (else SchemaOutdated naming
    `sparc-video migrate`: production migrates in a Job before starting the new version).
    Unavailable when the database cannot be reached or DATABASE_URL is unset."""
    url = reveal(settings.database_url)
    if not url:
        raise DatabaseNotConfigured(
            "DATABASE_URL is not set: PostgreSQL holds every export, camera and audit entry. "
            "Set it to the database's URL (`sparc-video dev` starts one by itself)."
        )
    async with open_database(
        url,
        max_size=settings.database_pool_max_size,
        slow_query_s=settings.database_slow_query_s,
    ) as database:
        await require_current_schema(url)
        yield database


@asynccontextmanager
async def open_dependencies(settings: Settings, redis: ArqRedis) -> AsyncIterator[Dependencies]:
    """The shared clients over `redis` (the caller's: the server's pool, or the one arq gives a
    worker); the storage client and the database pool are closed on exit."""
    keys = Keys(settings.redis_prefix)
    async with open_configured_database(settings) as database, open_storage(settings) as storage:
        yield Dependencies(
            keys=keys,
            storage=storage,
            store=ExportStore(redis, keys, database, event_retention_s=settings.event_retention_s),
            queue=ExportQueue(redis, keys),
            # Workers sign manifests; the server only publishes the public half.
            signer=ManifestSigner.from_settings(settings),
            # The server serves them; the workers' reconciler removes the unused ones.
            uploads=Uploads(settings, UploadStore(redis, keys), storage),
            database=database,
        )


@dataclass(frozen=True)
class App:
    settings: Settings
    redis: ArqRedis
    storage: Storage
    store: ExportStore
    queue: ExportQueue
    hub: EventHub
    exports: Exports
    cameras: Cameras
    recordings: Recordings
    signer: ManifestSigner
    uploads: Uploads
    database: Database
    audit: AuditLog
    recording: RecordingControl


def redis_settings(settings: Settings) -> RedisSettings:
    redis = RedisSettings.from_dsn(settings.redis_url)
    # Fail fast at start (and in health checks) instead of arq's default 5 slow retries.
    redis.conn_retries = 2
    redis.conn_timeout = 2
    return redis


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    async with AsyncExitStack() as stack:
        # One client serves records and the arq queue: ArqRedis is a redis.asyncio.Redis.
        redis = await create_pool(redis_settings(settings))
        stack.push_async_callback(redis.aclose)
        deps = await stack.enter_async_context(open_dependencies(settings, redis))
        keys, storage, store, queue = deps.keys, deps.storage, deps.store, deps.queue
        hub = EventHub(settings.redis_url, keys)
        await hub.start()
        stack.push_async_callback(hub.aclose)
        camera_store = CameraStore(deps.database, RecordingHolds(deps.database))
        # Apart, so a few long recording reads never hold up quick stream probes.
        stream_prober = MediaProber(settings.processing_memory_limit, concurrency=8)
        file_prober = MediaProber(settings.processing_memory_limit, concurrency=2)
        yield App(
            settings=settings,
            redis=redis,
            storage=storage,
            store=store,
            queue=queue,
            hub=hub,
            exports=Exports(
                settings,
                store,
                queue,
                storage,
                hub,
                ExportSources(camera_store, settings.max_export_range_s, deps.database),
                claim_source=deps.uploads.claim_source,
            ),
            signer=deps.signer,
            cameras=Cameras(
                settings,
                camera_store,
                storage,
                CredentialCipher.from_settings(settings),
                stream_prober,
            ),
            recordings=Recordings(settings, camera_store, storage, file_prober),
            uploads=deps.uploads,
            database=deps.database,
            audit=AuditLog(deps.database),
            recording=RecordingControl(deps.database, redis, keys),
        )


async def run_recorder(
    settings: Settings,
    stop: asyncio.Event,
    recorder_id: str | None = None,
    live: LiveHubs | None = None,
    live_address: str = "",
) -> None:
    """A recorder (`sparc-video recorder`, or inside `dev`) until `stop` is set: its cameras
    are released and its buffered segments uploaded as far as the stop allows. `live`: the
    hubs its cameras' live view goes to (`dev` shares them with its API server; a recorder's
    live server serves them at `live_address`, which it advertises with its leases)."""
    # Imported here: the recorder's ingest loads PyAV, which the API server never imports
    # (a test holds it to that), and `open_app` lives in this module too.
    from sparc_video.recording.recorder import Recorder

    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with (
            open_configured_database(settings) as database,
            open_storage(settings) as storage,
        ):
            # The storage-used gauge, kept in step with what recorders write and sweep.
            usage = StorageUsage(redis, Keys(settings.redis_prefix))
            recorder = Recorder(
                settings,
                database,
                redis,
                storage,
                recorder_id,
                forget_object=usage.forget_prefix,
                on_stored=usage.record,
                live=live,
                live_address=live_address,
            )
            await recorder.run(stop, CameraStore(database, RecordingHolds(database)))
    finally:
        await redis.aclose()
