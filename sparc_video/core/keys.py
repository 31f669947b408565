"""Names of the Redis keys the service and its workers share, all under one prefix.

Kept in one place so the server, the worker and the tests agree, and an operator can find an
export's keys with `redis-cli --scan --pattern 'PREFIX:export:ID*'`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

# The arq function a worker registers and the server enqueues by name: the server never imports
# the worker's code.
RUN_EXPORT_JOB = "run_export"


@dataclass(frozen=True)
class Keys:
    prefix: str

    def export(self, export_id: str) -> str:
        """The export record (JSON)."""
        return f"{self.prefix}:export:{export_id}"

    def events(self, export_id: str) -> str:
        """The export's progress/state event stream."""
        return f"{self.prefix}:export:{export_id}:events"

    def lease(self, export_id: str) -> str:
        """Token of the attempt running the export; expires unless the worker renews it."""
        return f"{self.prefix}:export:{export_id}:lease"

    def upload(self, upload_id: str) -> str:
        """The upload record (JSON; UploadService)."""
        return f"{self.prefix}:upload:{upload_id}"

    def upload_lock(self, upload_id: str) -> str:
        """Held while an upload is completed, cancelled, claimed by an export or removed."""
        return f"{self.prefix}:upload:{upload_id}:lock"

    @property
    def upload_expiry(self) -> str:
        """Sorted set upload id → when it is removed (unix seconds) unless an export uses it."""
        return f"{self.prefix}:uploads:expiry"

    @property
    def reconciler_lock(self) -> str:
        """Held by the one worker reconciling at a time."""
        return f"{self.prefix}:reconciler"

    @property
    def all_exports(self) -> str:
        """Sorted set of every export id (score 0: ids sort by creation time)."""
        return f"{self.prefix}:exports"

    def by_state(self, state: str) -> str:
        """Sorted set of the ids of exports in one state."""
        return f"{self.prefix}:exports:state:{state}"

    def request(self, requester: str, request_id: str) -> str:
        """(principal, request_id) → export id, for idempotent CreateExport: request ids are
        per principal, so one principal's id never finds another's export."""
        return f"{self.prefix}:request:{_segment(requester)}:{request_id}"

    def principal_exports(self, principal: str) -> str:
        """Sorted set (score 0, by id: by age) of the exports a principal created."""
        return f"{self.prefix}:principal:{_segment(principal)}:exports"

    def principal_unfinished(self, principal: str) -> str:
        """Set of a principal's exports not yet in a terminal state (its queued-export quota)."""
        return f"{self.prefix}:principal:{_segment(principal)}:unfinished"

    def principal_rate(self, principal: str, window: int) -> str:
        """Count of the RPCs a principal started in one rate-limit window (expires)."""
        return f"{self.prefix}:principal:{_segment(principal)}:rate:{window}"

    @property
    def workers(self) -> str:
        """Sorted set worker id → last heartbeat (unix seconds)."""
        return f"{self.prefix}:workers"

    @property
    def worker_hardware(self) -> str:
        """Hash worker id → its hardware encoders as its start-up probe found them."""
        return f"{self.prefix}:workers:hardware"

    @property
    def worker_signing_keys(self) -> str:
        """Hash worker id → id of the key it signs manifests with."""
        return f"{self.prefix}:workers:signing-key"

    @property
    def queue(self) -> str:
        """The arq queue."""
        return f"{self.prefix}:queue"

    @property
    def stored_objects(self) -> str:
        """Sorted set (score 0) of the object keys the workers wrote, for prefix lookups."""
        return f"{self.prefix}:storage:objects"

    @property
    def stored_sizes(self) -> str:
        """Hash object key → size in bytes of what the workers wrote."""
        return f"{self.prefix}:storage:sizes"

    @property
    def stored_bytes(self) -> str:
        """Sum of stored_sizes, kept in step by the same scripts (video_storage_used_bytes)."""
        return f"{self.prefix}:storage:bytes"

    @property
    def queue_wakeup(self) -> str:
        """Pub/sub channel told of every enqueue, so idle workers start the job without polling."""
        return f"{self.prefix}:queue:wakeup"

    @property
    def recorders(self) -> str:
        """Sorted set recorder id → when its membership lapses (unix ms) unless renewed."""
        return f"{self.prefix}:recorders"

    def recorder_lease(self, camera_id: str) -> str:
        """Id of the recorder recording the camera; expires unless that recorder renews it."""
        return f"{self.prefix}:camera:{camera_id}:recorder"

    def recorder_live_address(self, recorder_id: str) -> str:
        """Where the recorder serves live view (JSON: grpc_target, http_base_url); expires
        with its membership unless renewed."""
        return f"{self.prefix}:recorders:{recorder_id}:live"

    @property
    def retention_lock(self) -> str:
        """Held by the one recorder sweeping expired recorded segments."""
        return f"{self.prefix}:recorders:retention"

    def recording_status(self, camera_id: str) -> str:
        """The camera's live recording status (JSON), written by the recorder holding it."""
        return f"{self.prefix}:camera:{camera_id}:recording"

    def recording_events(self, camera_id: str) -> str:
        """Stream of the camera's recording status as each change was written (WatchCamera)."""
        return f"{self.prefix}:camera:{camera_id}:recording:events"


def _segment(principal: str) -> str:
    """A principal id as one key segment: identities such as `spiffe://a/b` hold `:` and `/`,
    which would otherwise make two different (principal, suffix) pairs the same key."""
    return quote(principal, safe="")
