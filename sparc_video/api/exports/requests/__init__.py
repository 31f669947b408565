"""ExportService requests → validated domain values.

Every problem is collected as a FieldViolation naming the field (AIP-193 style paths such as
`export.operations[1].transcode.bitrate`), so one call reports everything wrong at once. By
concern:

- `calls`: whole requests → the arguments of their one domain call (what the handlers use);
- `sources`: the export's source (object, recording, camera time range);
- `operations`: the operation list, by kind in `outputs` (transcode, convert, compress,
  thumbnail) and `edits` (watermark and its clock, trim, redact);
- `metadata`: request id, priority, case id, purpose;
- `fields`: parsers of sizes, rates, times, enum values and codec names that all of them share.
"""

from sparc_video.api.common import parse_export_name, raise_if_any
from sparc_video.api.exports.requests.calls import (
    CreateArgs,
    ListArgs,
    create_args,
    download_ttl_s,
    list_args,
)
from sparc_video.api.exports.requests.edits import (
    DEFAULT_REDACT_STRENGTH,
    MAX_REDACT_REGIONS,
    MAX_WATERMARK_TEXT,
    require_capture_times,
)
from sparc_video.api.exports.requests.fields import (
    MAX_DIMENSION,
    parse_bitrate,
    parse_fps,
    parse_media_time,
    parse_resolution,
    parse_size_bytes,
    parse_timestamp,
    validate_key_field,
)
from sparc_video.api.exports.requests.metadata import (
    MAX_CASE_ID_LEN,
    MAX_PURPOSE_LEN,
    MAX_REQUEST_ID_LEN,
    validate_case_id,
    validate_priority,
    validate_purpose,
    validate_request_id,
)
from sparc_video.api.exports.requests.operations import MAX_OPERATIONS, validate_operations
from sparc_video.api.exports.requests.outputs import MAX_THUMBNAILS
from sparc_video.api.exports.requests.sources import validate_source, validate_source_key

__all__ = [
    "DEFAULT_REDACT_STRENGTH",
    "MAX_CASE_ID_LEN",
    "MAX_DIMENSION",
    "MAX_OPERATIONS",
    "MAX_PURPOSE_LEN",
    "MAX_REDACT_REGIONS",
    "MAX_REQUEST_ID_LEN",
    "MAX_THUMBNAILS",
    "MAX_WATERMARK_TEXT",
    "CreateArgs",
    "ListArgs",
    "create_args",
    "download_ttl_s",
    "list_args",
    "parse_bitrate",
    "parse_export_name",
    "parse_fps",
    "parse_media_time",
    "parse_resolution",
    "parse_size_bytes",
    "parse_timestamp",
    "raise_if_any",
    "require_capture_times",
    "validate_case_id",
    "validate_key_field",
    "validate_operations",
    "validate_priority",
    "validate_purpose",
    "validate_request_id",
    "validate_source",
    "validate_source_key",
]
