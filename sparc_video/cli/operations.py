"""Operation flags of `export create`, made from the proto: every `Operation` variant is a
flag under its field name (`--transcode`), and its options message's fields are the
`KEY=VALUE` keys (`codec=h264`), so every operation and option the API has is on the command
line. Also the source flags (a storage key, `--recording`, `--camera` with a time range) and the
reverse: an operation or source as text."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import click
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from sparc.video.v1 import export_pb2

from sparc_video.cli.progress import utc
from sparc_video.cli.runner import UsageError
from sparc_video.client.operations import duration

OPERATION_FIELDS = {
    f.name: f for f in export_pb2.Operation.DESCRIPTOR.oneofs_by_name["operation"].fields
}
OPERATION_KINDS = tuple(OPERATION_FIELDS)
# Shorter names people expect for some fields: `--thumbnail at=50%`.
KEY_ALIASES = {"thumbnail": {"at": "timestamps"}, "redact": {"region": "regions"}}


def _split_options(text: str) -> list[str]:
    """`a=1,b=x\\,y` → [`a=1`, `b=x,y`]: a backslash keeps a comma inside a value."""
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _options_fields(descriptor: Descriptor, prefix: str = "") -> dict[str, FieldDescriptor]:
    """KEY → field for every settable option, nested messages as `parent.child` keys."""
    fields: dict[str, FieldDescriptor] = {}
    for fd in descriptor.fields:
        if fd.message_type is not None and fd.message_type.full_name not in _SCALAR_MESSAGES:
            fields.update(_options_fields(fd.message_type, f"{prefix}{fd.name}."))
        else:
            fields[prefix + fd.name] = fd
    return fields


# Messages given as one value: `5s`, `2024-05-01T12:00:00Z`, a region `X:Y:WIDTH:HEIGHT`.
_DURATION = "google.protobuf.Duration"
_TIMESTAMP = "google.protobuf.Timestamp"
_REGION = "sparc.video.v1.RedactOptions.Region"
_SCALAR_MESSAGES = {_DURATION, _TIMESTAMP, _REGION}


def enum_choices(fd: FieldDescriptor) -> dict[str, int]:
    """Lower-case short names of an enum's values: `HARDWARE_NVENC` → `nvenc`."""
    assert fd.enum_type is not None
    choices = {}
    prefix = _common_prefix([v.name for v in fd.enum_type.values])
    for value in fd.enum_type.values:
        if value.number != 0:
            choices[value.name.removeprefix(prefix).lower()] = value.number
    return choices


def _common_prefix(names: list[str]) -> str:
    first = names[0]
    prefix = first[: first.index("_") + 1] if "_" in first else ""
    return prefix if all(n.startswith(prefix) for n in names) else ""


def _convert(kind: str, key: str, fd: FieldDescriptor, value: str) -> Any:
    try:
        if fd.type == FieldDescriptor.TYPE_ENUM:
            choices = enum_choices(fd)
            short = value.strip().lower()
            if short not in choices:
                raise ValueError(f"expected one of {', '.join(choices)}")
            return choices[short]
        if fd.type == FieldDescriptor.TYPE_BOOL:
            truth = value.strip().lower()
            if truth not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError("expected true or false")
            return truth in ("", "1", "true", "yes", "on")
        if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return float(value)
        if fd.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
            return int(value)
        if fd.message_type is not None and fd.message_type.full_name == _TIMESTAMP:
            when = timestamp_pb2.Timestamp()
            try:
                when.FromJsonString(value)
            except ValueError:
                raise ValueError("expected an RFC 3339 time such as 2024-05-01T12:00:00Z") from None
            return when
        if fd.message_type is not None and fd.message_type.full_name == _REGION:
            numbers = value.split(":")
            if len(numbers) != 4:
                raise ValueError("expected X:Y:WIDTH:HEIGHT as fractions of the frame")
            x, y, width, height = (float(n) for n in numbers)
            return export_pb2.RedactOptions.Region(x=x, y=y, width=width, height=height)
        if fd.message_type is not None:
            return duration(float(value.removesuffix("s")))
        return value
    except ValueError as exc:
        raise UsageError(f"--{kind}: {key}={value!r}: {exc}") from None


def _operation_options(kind: str) -> dict[str, FieldDescriptor]:
    message_type = OPERATION_FIELDS[kind].message_type
    assert message_type is not None, "every Operation variant is an options message"
    return _options_fields(message_type)


def _key_names(kind: str) -> list[str]:
    aliases = {field: alias for alias, field in KEY_ALIASES.get(kind, {}).items()}
    return [aliases.get(key, key) for key in _operation_options(kind)]


def operation_help(kind: str) -> str:
    options = _operation_options(kind)
    aliases = {field: alias for alias, field in KEY_ALIASES.get(kind, {}).items()}
    keys = []
    for key, fd in options.items():
        name = aliases.get(key, key)
        if fd.type == FieldDescriptor.TYPE_ENUM:
            name += "=" + "|".join(enum_choices(fd))
        elif fd.is_repeated:
            name += " (repeatable)"
        keys.append(name)
    return f"{kind} operation; keys: " + ", ".join(keys)


def parse_operation(kind: str, text: str) -> export_pb2.Operation:
    """`--transcode codec=h264,bitrate=1000k` → an Operation with TranscodeOptions."""
    operation = export_pb2.Operation()
    options = getattr(operation, kind)
    options.SetInParent()
    fields = _options_fields(options.DESCRIPTOR)
    aliases = KEY_ALIASES.get(kind, {})
    seen: set[str] = set()
    for part in _split_options(text):
        raw_key, sep, value = part.partition("=")
        key = raw_key.strip().lower().replace("-", "_")
        key = aliases.get(key, key)
        fd = fields.get(key)
        if not sep or fd is None:
            raise UsageError(
                f"--{kind}: {part!r} is not KEY=VALUE with KEY one of {', '.join(_key_names(kind))}"
            )
        repeated = fd.is_repeated
        if key in seen and not repeated:
            raise UsageError(f"--{kind}: {raw_key.strip()} given twice")
        seen.add(key)
        target = options
        for step in key.split(".")[:-1]:
            target = getattr(target, step)
        converted = _convert(kind, raw_key.strip(), fd, value.strip())
        if repeated:
            getattr(target, fd.name).append(converted)
        elif fd.message_type is not None:
            getattr(target, fd.name).CopyFrom(converted)
        else:
            setattr(target, fd.name, converted)
    return operation


def timestamp(text: str) -> datetime.datetime:
    """ISO 8601 with a timezone: `2026-11-24T08:00:00Z`, `2026-11-24T09:00:00+01:00`."""
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time like 2026-11-24T08:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone; add Z or +HH:MM")
    return value


def timestamp_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime.datetime | None:
    """A click callback: the option's text as `timestamp()`, or a usage error."""
    if value is None:
        return None
    try:
        return timestamp(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


GAP_MODES = {
    "close": export_pb2.CameraTimeRange.GAP_MODE_CLOSE,
    "slate": export_pb2.CameraTimeRange.GAP_MODE_SLATE,
}


def parse_source(
    source: str | None,
    *,
    recording: str | None = None,
    camera: str | None = None,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
    gaps: str | None = None,
    wall_clock_subtitles: bool = False,
) -> export_pb2.ExportSource:
    """The one source the flags name: an object key, --recording, or --camera with a range."""
    given = [f for f, v in (("SOURCE", source), ("--recording", recording),
                            ("--camera", camera)) if v]  # fmt: skip
    if len(given) != 1:
        raise UsageError(
            "give one source: a storage key, --recording NAME, or --camera NAME --from T --to T"
            + (f" (not {' and '.join(given)})" if given else "")
        )
    if not camera and (start or end or gaps or wall_clock_subtitles):
        raise UsageError("--from, --to, --gaps and --wall-clock-subtitles go with --camera")
    if recording:
        return export_pb2.ExportSource(recording=recording)
    if camera:
        if not start or not end:
            raise UsageError("--camera needs --from and --to")
        wanted = export_pb2.CameraTimeRange(
            camera=camera if camera.startswith("cameras/") else f"cameras/{camera}",
            gap_mode=GAP_MODES[gaps or "close"],
            wall_clock_subtitles=wall_clock_subtitles,
        )
        wanted.start_time.FromDatetime(start)
        wanted.end_time.FromDatetime(end)
        return export_pb2.ExportSource(camera_range=wanted)
    assert source is not None
    return export_pb2.ExportSource(object_key=source)


def parse_operations(operations: Sequence[tuple[str, str]]) -> list[export_pb2.Operation]:
    if not operations:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in OPERATION_KINDS)
        raise UsageError(f"give at least one operation ({flags})")
    return [parse_operation(kind, text) for kind, text in operations]


def describe_operation(operation: export_pb2.Operation) -> str:
    """The operation as its command-line flag would spell it: `transcode codec=h264,...`."""
    kind = operation.WhichOneof("operation")
    if kind is None:
        return "(an operation this client does not know)"
    aliases = {field: alias for alias, field in KEY_ALIASES.get(kind, {}).items()}
    parts: list[str] = []

    def walk(message: Message, prefix: str) -> None:
        for fd, value in message.ListFields():
            key = prefix + fd.name
            if fd.message_type is not None and fd.message_type.full_name not in _SCALAR_MESSAGES:
                walk(value, key + ".")
                continue
            values = list(value) if fd.is_repeated else [value]
            for item in values:
                if fd.type == FieldDescriptor.TYPE_ENUM:
                    names = {v: k for k, v in enum_choices(fd).items()}
                    item = names.get(item, item)
                elif isinstance(item, duration_pb2.Duration):
                    item = f"{item.ToNanoseconds() / 1e9:g}s"
                elif isinstance(item, timestamp_pb2.Timestamp):
                    item = item.ToJsonString()
                elif isinstance(item, export_pb2.RedactOptions.Region):
                    item = f"{item.x:g}:{item.y:g}:{item.width:g}:{item.height:g}"
                elif isinstance(item, bool):
                    item = str(item).lower()
                parts.append(f"{aliases.get(key, key)}={item}")

    walk(getattr(operation, kind), "")
    return f"{kind} {','.join(parts)}".rstrip()


def source_text(source: export_pb2.ExportSource) -> str:
    which = source.WhichOneof("source")
    if which == "recording":
        return source.recording
    if which == "camera_range":
        wanted = source.camera_range
        gaps = "slate" if wanted.gap_mode == export_pb2.CameraTimeRange.GAP_MODE_SLATE else "close"
        return f"{wanted.camera} {utc(wanted.start_time)} - {utc(wanted.end_time)} (gaps: {gaps})"
    return source.object_key
