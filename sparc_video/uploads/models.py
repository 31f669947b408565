"""What an upload is: its record in Redis and the view of it a caller gets."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field

from sparc_video.storage import StoredPart, UploadTarget


class UploadState(enum.StrEnum):
    UPLOADING = "UPLOADING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@dataclass
class UploadRecord:
    id: str
    # The principal that created it: only it (or an admin) sees and uses it.
    owner: str
    filename: str
    size_bytes: int
    sha256: str
    content_type: str
    object_key: str
    # The storage backend's own id of the multipart upload.
    storage_upload_id: str
    part_size: int
    create_time: float
    expire_time: float
    state: UploadState = UploadState.UPLOADING
    complete_time: float = 0.0
    # Whether an export has used the object; it is then never removed by retention.
    used: bool = False

    @property
    def part_count(self) -> int:
        return -(-self.size_bytes // self.part_size)

    def part_size_of(self, number: int) -> int:
        """Size of part `number` (1-based): part_size, the last one the rest."""
        if number < self.part_count:
            return self.part_size
        return self.size_bytes - self.part_size * (self.part_count - 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> UploadRecord:
        data = json.loads(text)
        data["state"] = UploadState(data["state"])
        return cls(**data)


@dataclass(frozen=True)
class UploadPart:
    """A part still to send, with where to send it."""

    number: int
    size_bytes: int
    target: UploadTarget


@dataclass(frozen=True)
class UploadView:
    """An upload as GetUpload shows it: the record, the parts stored, URLs for the rest."""

    record: UploadRecord
    stored: list[StoredPart] = field(default_factory=list)
    missing: list[UploadPart] = field(default_factory=list)
