"""What CameraService does with cameras, free of protobuf and gRPC: one method per RPC.

Handlers (`api/cameras/handlers.py`) validate requests with `api/cameras/requests.py`, call one
method here and convert the result with `api/cameras/mapping.py`. Recordings are in `recordings.py`.

Secrets (the stream's log-in and secret query values, see `stream_urls.py`) are decrypted only
to open the stream, and every message that could quote them is scrubbed first. They are bound
to the stream's origin (scheme, host, port): pointing a camera at another host drops them
unless new ones come along, so someone allowed to edit cameras cannot aim a camera at a server
of theirs and have the next probe hand it the password.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sparc_video.audit import Action, AuditEntry
from sparc_video.cameras.audit_entries import credential_fields
from sparc_video.cameras.credentials import CredentialCipher, CredentialsUnreadable
from sparc_video.cameras.records import (
    CameraRecord,
    CameraStatus,
    CameraStore,
    RecordingsChanged,
)
from sparc_video.core.errors import (
    ErrorRecord,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)
from sparc_video.core.ids import new_id
from sparc_video.core.settings import Settings
from sparc_video.media.probe import MediaProber, StreamRead
from sparc_video.security import confinement
from sparc_video.security.address_policy import REFUSED_REASON, AddressPolicy, AddressRefused
from sparc_video.security.stream_urls import (
    REDACTED,
    ParsedStreamUrl,
    StreamSecrets,
    compose,
    display_url,
    origin_of,
    scrub,
)
from sparc_video.storage import ManagedStorage

DEFAULT_STREAM_TIMEOUT_S = 10.0
MAX_STREAM_TIMEOUT_S = 60.0
# Fields UpdateCamera may change, as named in update_mask.
UPDATABLE = frozenset(
    {"display_name", "site", "location", "labels", "enabled", "stream_url", "credentials"}
)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class CameraFields:
    """The writable fields of a camera as validated from a request."""

    display_name: str = ""
    site: str = ""
    location: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    stream_url: ParsedStreamUrl | None = None
    credentials: Credentials | None = None


@dataclass(frozen=True)
class CameraFilter:
    """ListCameras' conditions, all of which must hold; `text` scopes page tokens."""

    text: str = ""
    site: str | None = None
    enabled: bool | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, camera: CameraRecord) -> bool:
        return (
            (self.site is None or camera.site == self.site)
            and (self.enabled is None or camera.enabled == self.enabled)
            and all(camera.labels.get(key) == value for key, value in self.labels)
        )


@dataclass(frozen=True)
class ProbeOutcome:
    camera: CameraRecord
    read: StreamRead
    start_time: float
    error: ErrorRecord | None


@dataclass(frozen=True)
class Snapshot:
    storage_key: str
    url: str
    expire_time: float
    capture_time: float
    width: int
    height: int
    size_bytes: int


class Cameras:
    def __init__(
        self,
        settings: Settings,
        store: CameraStore,
        storage: ManagedStorage,
        cipher: CredentialCipher,
        prober: MediaProber,
    ) -> None:
        self._settings = settings
        self._store = store
        self._storage = storage
        self._cipher = cipher
        self._prober = prober
        self._policy = AddressPolicy.from_settings(settings)

    async def _check_address(self, url: ParsedStreamUrl | None) -> None:
        """The address policy on a new stream URL, where its host resolves now."""
        if url is None:
            return
        try:
            await asyncio.to_thread(self._policy.check_url, url.public_url)
        except AddressRefused as exc:
            raise InvalidArgument(
                [FieldViolation("camera.stream_url", str(exc))], reason="ADDRESS_REFUSED"
            ) from None

    async def _read(
        self, record: CameraRecord, secrets: StreamSecrets, timeout_s: float, snapshot: bool
    ) -> StreamRead:
        return await self._prober.read_stream(
            compose(record.stream_url, secrets), timeout_s, snapshot=snapshot, policy=self._policy
        )

    async def create(self, fields: CameraFields, camera_id: str, principal: str) -> CameraRecord:
        camera_id = camera_id or new_id()
        assert fields.stream_url is not None, "validation requires stream_url"
        await self._check_address(fields.stream_url)
        public, secrets = merge_secrets(None, StreamSecrets, fields.stream_url, fields.credentials)
        record = CameraRecord(
            id=camera_id,
            stream_url=public,
            display_name=fields.display_name,
            site=fields.site,
            location=fields.location,
            labels=dict(fields.labels),
            enabled=fields.enabled,
            secrets=self._cipher.encrypt(camera_id, secrets),
            has_userinfo=secrets.has_userinfo,
        )
        return await self._store.create_camera(record, principal)

    async def get(self, camera_id: str) -> CameraRecord:
        return await self._store.get_camera(camera_id)

    async def page(
        self, page_size: int, page_token: str, condition: CameraFilter
    ) -> tuple[list[CameraRecord], str]:
        return await self._store.page_cameras(
            page_size=page_size, page_token=page_token, scope=condition.text, keep=condition.matches
        )

    async def update(
        self, camera_id: str, fields: CameraFields, paths: frozenset[str], principal: str
    ) -> CameraRecord:
        if "stream_url" in paths:
            await self._check_address(fields.stream_url)
        # What the change did, for the audit entries written in its transaction.
        changed: list[str] = []
        changed_secrets: list[str] = []

        def change(record: CameraRecord) -> bool:
            before = CameraRecord.from_json(record.to_json())
            if paths & {"stream_url", "credentials"}:
                public, secrets = merge_secrets(
                    record.stream_url,
                    lambda: self._cipher.decrypt(record.id, record.secrets),
                    fields.stream_url if "stream_url" in paths else None,
                    fields.credentials if "credentials" in paths else None,
                )
                stored = self._stored_secrets(record)
                if public != record.stream_url or secrets != stored:
                    changed_secrets.extend(credential_fields(stored, secrets))
                    # What was seen of the old stream says nothing about the new one.
                    record.stream_url = public
                    record.secrets = self._cipher.encrypt(record.id, secrets)
                    record.has_userinfo = secrets.has_userinfo
                    record.status = CameraStatus.UNKNOWN
                    record.stream = record.last_error = None
                    record.last_seen_time = record.last_probe_time = None
            for name in paths & {"display_name", "site", "location", "enabled"}:
                setattr(record, name, getattr(fields, name))
            if "labels" in paths:
                record.labels = dict(fields.labels)
            changed.extend(
                name
                for name in ("display_name", "site", "location", "labels", "enabled", "stream_url")
                if getattr(before, name) != getattr(record, name)
            )
            return True

        def audit(record: CameraRecord) -> list[AuditEntry]:
            details = {"fields": changed}
            entries = [AuditEntry(principal, Action.CAMERA_UPDATE, record.name, details=details)]
            if changed_secrets:
                entries.append(
                    AuditEntry(
                        principal,
                        Action.CAMERA_CREDENTIALS_CHANGE,
                        record.name,
                        details={"fields": changed_secrets},
                    )
                )
            return entries

        return await self._store.update_camera(camera_id, change, audit)

    async def delete(self, camera_id: str, force: bool, principal: str) -> None:
        if not force:
            await self._store.delete_camera(camera_id, [], force=False, principal=principal)
        else:
            await self._store.get_camera(camera_id)
            marked: set[str] = set()
            deleted = False
            try:
                while True:
                    recordings = await self._store.all_recordings(camera_id)
                    # None may be read by an unfinished export: refused before anything goes.
                    for recording in recordings:
                        if recording.id not in marked:
                            await self._store.holds.begin_delete(recording.id, recording.name)
                            marked.add(recording.id)
                    # Objects first: if deleting one fails, the records still say what is
                    # left, and the call can be repeated.
                    for recording in recordings:
                        await self._storage.delete(recording.object_key)
                    try:
                        await self._store.delete_camera(
                            camera_id, recordings, force=True, principal=principal
                        )
                        deleted = True
                        break
                    except RecordingsChanged:
                        continue
            finally:
                for recording_id in marked:
                    await self._store.holds.end_delete(recording_id, deleted=deleted)
        # Snapshots, and uploads never registered as recordings.
        await self._storage.delete_prefix(f"cameras/{camera_id}/")

    async def probe(self, camera_id: str, timeout_s: float) -> ProbeOutcome:
        record = await self._store.get_camera(camera_id)
        secrets = self._cipher.decrypt(record.id, record.secrets)
        start = time.time()
        read = await self._read(record, secrets, timeout_s, snapshot=False)
        error = self._read_error(record, secrets, read, timeout_s)
        camera = await self._record_outcome(record, start, read, error)
        _raise_if_refused(read, error)
        return ProbeOutcome(camera, read, start, error)

    async def snapshot(self, camera_id: str, timeout_s: float, url_ttl_s: int) -> Snapshot:
        confinement.check_ttl(url_ttl_s, self._settings, "url_ttl")
        url_ttl_s = url_ttl_s or self._settings.download_url_ttl_s
        record = await self._store.get_camera(camera_id)
        secrets = self._cipher.decrypt(record.id, record.secrets)
        start = time.time()
        read = await self._read(record, secrets, timeout_s, snapshot=True)
        error = self._read_error(record, secrets, read, timeout_s)
        await self._record_outcome(record, start, read, error)
        _raise_if_refused(read, error)
        if error is not None:
            raise Unavailable(error.message, reason=error.reason)
        assert read.info is not None
        captured = start + read.first_frame_s
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(captured))
        millis = int(captured * 1000) % 1000
        key = f"cameras/{camera_id}/snapshots/{stamp}{millis:03d}Z-{uuid.uuid4().hex[:8]}.jpg"
        info = await self._storage.put_bytes(key, read.jpeg, "image/jpeg")
        expire = time.time() + url_ttl_s
        url = await self._storage.download_url(key, url_ttl_s, filename=key.rsplit("/", 1)[1])
        return Snapshot(
            storage_key=key,
            url=url,
            expire_time=expire,
            capture_time=captured,
            width=read.info.width,
            height=read.info.height,
            size_bytes=info.size_bytes,
        )

    def _stored_secrets(self, record: CameraRecord) -> StreamSecrets | None:
        """None when the token no longer decrypts: whatever is new differs from it."""
        try:
            return self._cipher.decrypt(record.id, record.secrets)
        except CredentialsUnreadable:
            return None

    def _read_error(
        self, record: CameraRecord, secrets: StreamSecrets, read: StreamRead, timeout_s: float
    ) -> ErrorRecord | None:
        if read.ok:
            return None
        detail = read.message
        if read.reason == "TIMEOUT":
            detail = f"no picture within {timeout_s:g} s"
        shown = display_url(record.stream_url, record.has_userinfo)
        message = scrub(f"camera {record.name} ({shown}): {detail}", secrets)
        return ErrorRecord.from_error(Unavailable(message, reason=read.reason))

    async def _record_outcome(
        self, probed: CameraRecord, start: float, read: StreamRead, error: ErrorRecord | None
    ) -> CameraRecord:
        def change(record: CameraRecord) -> bool:
            # Changed meanwhile: the outcome describes a stream the camera no longer has.
            if (record.stream_url, record.secrets) != (probed.stream_url, probed.secrets):
                return False
            record.last_probe_time = start
            if error is None and read.info is not None:
                record.status = CameraStatus.ONLINE
                record.last_seen_time = start + read.first_frame_s
                record.stream = read.info
                record.last_error = None
            else:
                record.status = CameraStatus.OFFLINE
                record.last_error = error
            return True

        return await self._store.update_camera(probed.id, change)


def _raise_if_refused(read: StreamRead, error: ErrorRecord | None) -> None:
    """A stream the address policy refuses is not "offline": the call itself is refused."""
    if error is not None and read.reason == REFUSED_REASON:
        raise FailedPrecondition(error.message, reason=REFUSED_REASON)


def merge_secrets(
    current_url: str | None,
    load_current: Callable[[], StreamSecrets],
    url: ParsedStreamUrl | None,
    credentials: Credentials | None,
) -> tuple[str, StreamSecrets]:
    """The public URL and secrets after a change of `url` and/or `credentials` (None: no
    change). `load_current` is called only when stored secrets are kept, so a camera whose
    token no longer decrypts can still be given new ones."""
    public = url.public_url if url is not None else current_url
    assert public is not None
    same_origin = current_url is not None and origin_of(public) == origin_of(current_url)
    cache: list[StreamSecrets] = []

    def kept() -> StreamSecrets:
        if not same_origin:
            return StreamSecrets()
        if not cache:
            cache.append(load_current())
        return cache[0]

    def refuse(description: str) -> InvalidArgument:
        return InvalidArgument([FieldViolation("camera.stream_url", description)])

    username = password = ""
    if url is not None and url.has_userinfo:
        if credentials is not None:
            raise refuse("give the log-in either in stream_url or in credentials, not both")
        username, password = url.username or "", url.password or ""
    elif credentials is not None:
        username, password = credentials.username, credentials.password
    else:
        if url is not None and url.keep_userinfo and not kept().has_userinfo:
            raise refuse(
                f"the URL's log-in is {REDACTED!r}, but no log-in is stored for "
                f"{origin_of(public)}; send the user name and password"
            )
        username, password = kept().username, kept().password
    if url is None:
        query = dict(kept().query)
    else:
        query = {}
        for name, value in url.query_secrets.items():
            if value == REDACTED:
                if name not in kept().query:
                    raise refuse(
                        f"query parameter {name!r} is {REDACTED!r}, but no value is stored "
                        f"for it on {origin_of(public)}; send the value"
                    )
                query[name] = kept().query[name]
            else:
                query[name] = value
    return public, StreamSecrets(username, password, query)
