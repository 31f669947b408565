"""Client commands of `sparc-video`: `export create|get|list|cancel|watch|download`, `queue stats`,
`verify` (and `camera ...`, `recording ...` from `cli_cameras`).

They talk to a running server over gRPC through `sparc_video.client` and need none of the
server's settings. Results go to stdout (text, or JSON with `--output json`); progress and
notices go to stderr, so `name=$(sparc-video export create ...)` captures just the name.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.cli.progress import (
    MODES,
    Display,
    DownloadView,
    WatchView,
    export_error_text,
    media_time,
    seconds,
    size,
    state_name,
    utc,
)
from sparc_video.client import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT_S,
    AsyncExportClient,
    ChannelClient,
    DownloadedFile,
    DownloadError,
    ServiceError,
    export_name,
)
from sparc_video.evidence.bundle import (
    BundleError,
    HashMismatch,
    MissingFile,
    UnknownKey,
    verify_bundle,
)
from sparc_video.evidence.signing import keyring, parse_public_key, read_public_keys_file

Export = export_pb2.Export

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_DOWNLOAD = 6
# `verify`: the first check that failed.
EXIT_BAD_SIGNATURE = 7
EXIT_UNKNOWN_KEY = 8
EXIT_MISSING_FILE = 9
EXIT_HASH_MISMATCH = 10
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}    success (with --watch / watch: the export SUCCEEDED)
  {EXIT_FAILED}    the export FAILED
  {EXIT_USAGE}    usage error: bad flags or operation options
  {EXIT_CANCELLED}    the export was CANCELLED
  {EXIT_UNREACHABLE}    the server could not be reached or did not answer in time
       (UNAVAILABLE, DEADLINE_EXCEEDED; also TLS failures)
  {EXIT_REFUSED}    the server refused the request (NOT_FOUND, INVALID_ARGUMENT,
       FAILED_PRECONDITION, UNAUTHENTICATED, PERMISSION_DENIED, ...)
  {EXIT_DOWNLOAD}    a download failed, or its bytes did not match the export's sha256
  {EXIT_BAD_SIGNATURE}    verify: the manifest's signature does not verify (manifest or signature
       altered), or the bundle is malformed
  {EXIT_UNKNOWN_KEY}    verify: the manifest was signed with another key than the one given
  {EXIT_MISSING_FILE}    verify: the manifest, its signature or an output is missing
  {EXIT_HASH_MISMATCH}   verify: an output's size or sha256 differs from the manifest's
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""

CLIENT_ENVIRONMENT_HELP = f"""\
environment (flags win over variables):
  SPARC_VIDEO_TARGET       server address, host:port (default {DEFAULT_TARGET})
  SPARC_VIDEO_TLS          1/true: use TLS with the system's trusted CAs
  SPARC_VIDEO_CA_CERT      PEM file of the CA(s) to trust instead (implies TLS)
  SPARC_VIDEO_CLIENT_CERT, SPARC_VIDEO_CLIENT_KEY   PEM client certificate and key (mutual TLS)
  SPARC_VIDEO_SERVER_NAME  name to check the server's certificate against
  SPARC_VIDEO_TOKEN        bearer token, sent as `authorization: Bearer ...` (needs TLS)
  SPARC_VIDEO_TOKEN_FILE   file holding the bearer token
"""

EPILOG = CLIENT_ENVIRONMENT_HELP + "\n" + EXIT_CODES_HELP
# Operation flags and their keys come from the Operation message, so every operation and option
# the API has is on the command line under its proto name (`--transcode codec=h264`).
OPERATION_FIELDS = {
    f.name: f for f in export_pb2.Operation.DESCRIPTOR.oneofs_by_name["operation"].fields
}
OPERATION_KINDS = tuple(OPERATION_FIELDS)
# Shorter names people expect for some fields: `--thumbnail at=50%`.
KEY_ALIASES = {"thumbnail": {"at": "timestamps"}, "redact": {"region": "regions"}}
UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# The top-level commands that are clients of a server (main() runs them without settings).
CLIENT_COMMANDS = ("export", "queue", "camera", "recording", "verify")
_Client = TypeVar("_Client", bound=ChannelClient)


class UsageError(Exception):
    pass


def _tagged(kind: str) -> Callable[[str], tuple[str, str]]:
    # Both flags append to one list, so operations keep their command-line order.
    def tag(text: str) -> tuple[str, str]:
        return (kind, text)

    return tag


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--target",
        default=os.environ.get("SPARC_VIDEO_TARGET") or DEFAULT_TARGET,
        help="server address host:port (env SPARC_VIDEO_TARGET; default %(default)s)",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=_env_flag("SPARC_VIDEO_TLS"),
        help="use TLS (env SPARC_VIDEO_TLS=1)",
    )
    group.add_argument(
        "--ca-cert",
        type=Path,
        default=os.environ.get("SPARC_VIDEO_CA_CERT") or None,
        help="PEM CA bundle to trust; implies --tls (env SPARC_VIDEO_CA_CERT)",
    )
    group.add_argument(
        "--client-cert",
        type=Path,
        default=os.environ.get("SPARC_VIDEO_CLIENT_CERT") or None,
        help="PEM client certificate for mutual TLS (env SPARC_VIDEO_CLIENT_CERT)",
    )
    group.add_argument(
        "--client-key",
        type=Path,
        default=os.environ.get("SPARC_VIDEO_CLIENT_KEY") or None,
        help="PEM key of --client-cert (env SPARC_VIDEO_CLIENT_KEY)",
    )
    group.add_argument(
        "--server-name",
        default=os.environ.get("SPARC_VIDEO_SERVER_NAME") or None,
        help="name to verify the server certificate against (env SPARC_VIDEO_SERVER_NAME)",
    )
    # No --token flag: a token on the command line is visible to every user through ps.
    group.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get("SPARC_VIDEO_TOKEN_FILE") or None,
        help="file holding a bearer token; needs TLS (env SPARC_VIDEO_TOKEN_FILE, or the "
        "token itself in SPARC_VIDEO_TOKEN)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="deadline of each call in seconds, retries included (default %(default)s)",
    )
    common.add_argument(
        "--output",
        "-O",
        choices=("text", "json"),
        default="text",
        help="text for people, json for scripts (watch events as JSON lines)",
    )
    return common


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="progress on stderr: a redrawn bar on a terminal, plain lines otherwise (auto)",
    )


def _watch_options(parser: argparse.ArgumentParser) -> None:
    _progress_option(parser)
    parser.add_argument(
        "--reconnect-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="keep trying to resume a broken watch this long (default %(default)s)",
    )


def client_leaf(
    group: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
    name: str,
    text: str,
    handler: Callable[[argparse.Namespace, _Client], Coroutine[Any, Any, int]],
    client_type: type[_Client],
) -> argparse.ArgumentParser:
    """A client command: connection options, `--output`, and the handler `_run` calls with a
    connected `client_type`."""
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=text,
        description=text,
        parents=[common],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler, parser=parser, client_type=client_type)
    return parser


def add_client_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> None:
    # Imported here: cli_cameras builds on this module.
    from sparc_video.cli.cameras import add_camera_commands

    common = _connection_options()
    formatter = argparse.RawDescriptionHelpFormatter

    def leaf(
        group: argparse._SubParsersAction,  # type: ignore[type-arg]
        name: str,
        text: str,
        handler: Callable[[argparse.Namespace, AsyncExportClient], Coroutine[Any, Any, int]],
    ) -> argparse.ArgumentParser:
        return client_leaf(group, common, name, text, handler, AsyncExportClient)

    export = commands.add_parser(
        "export",
        help="create, inspect, watch and download exports on a server",
        description="Client commands for exports; each talks to the server at --target.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    export_commands = export.add_subparsers(dest="export_command", required=True)

    create = leaf(
        export_commands,
        "create",
        "queue an export of a stored video; print its name (or watch it with --watch)",
        _create,
    )
    create.add_argument(
        "source", nargs="?", help="storage key of the source video, e.g. samples/clip.mp4"
    )
    sources = create.add_argument_group("other sources (instead of a storage key)")
    sources.add_argument(
        "--recording", metavar="NAME", help="a recording, cameras/CAMERA/recordings/ID"
    )
    sources.add_argument(
        "--camera", metavar="NAME", help="a camera's footage from --from to --to (cameras/ID or ID)"
    )
    sources.add_argument(
        "--from", dest="start", type=timestamp, metavar="TIME", help="range start, ISO 8601 UTC"
    )
    sources.add_argument(
        "--to", dest="end", type=timestamp, metavar="TIME", help="range end (exclusive)"
    )
    sources.add_argument(
        "--gaps",
        choices=sorted(_GAP_MODES),
        help="times without footage: close them (default) or show a NO RECORDING slate",
    )
    sources.add_argument(
        "--wall-clock-subtitles",
        action="store_true",
        help="add a subtitle track with the capture time",
    )
    for kind in OPERATION_KINDS:
        create.add_argument(
            f"--{kind.replace('_', '-')}",
            nargs="?",
            const=(kind, ""),
            type=_tagged(kind),
            action="append",
            dest="operations",
            metavar="KEY=VALUE,...",
            help=operation_help(kind),
        )
    create.add_argument(
        "--request-id",
        help="idempotency key: repeating a create with it returns the first export "
        "(default: a fresh UUID)",
    )
    create.add_argument(
        "--case-id", default="", help="case the export is for (recorded in its signed manifest)"
    )
    create.add_argument(
        "--purpose", default="", help="why it is made (recorded in its signed manifest)"
    )
    create.add_argument(
        "--watch", action="store_true", help="then watch it to the end (exit code by outcome)"
    )
    _watch_options(create)
    create.epilog = (
        "operations run in the order given, e.g.\n"
        "  sparc-video export create samples/clip.mp4 \\\n"
        "    --transcode codec=h264,bitrate=1000k,resolution=1280x720 \\\n"
        "    --thumbnail at=50%,size=320x240 --watch\n\n" + EPILOG
    )

    get = leaf(export_commands, "get", "show one export", _get)
    get.add_argument("name", help="exports/ID or ID")

    listing = leaf(export_commands, "list", "list exports, newest first", _list)
    listing.add_argument(
        "--state",
        type=str.upper,
        help="only exports in this state (QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED)",
    )
    listing.add_argument("--page-size", type=int, default=0, help="exports per page (server: 50)")
    listing.add_argument("--page-token", default="", help="next page token of a previous list")
    listing.add_argument("--all", action="store_true", help="follow page tokens to the end")

    cancel = leaf(export_commands, "cancel", "stop an export that has not finished", _cancel)
    cancel.add_argument("name", help="exports/ID or ID")

    watch = leaf(
        export_commands,
        "watch",
        "follow an export to its end with a live progress bar; resumes across server restarts",
        _watch,
    )
    watch.add_argument("name", help="exports/ID or ID")
    _watch_options(watch)

    download = leaf(
        export_commands,
        "download",
        "fetch a finished export's outputs, its manifest and signature; verify their sha256",
        _download,
    )
    download.add_argument("name", help="exports/ID or ID")
    download.add_argument(
        "-o",
        "--directory",
        type=Path,
        help="where to put the files (default ./ID); files already there with the right "
        "sha256 are kept",
    )
    _progress_option(download)

    queue = commands.add_parser(
        "queue",
        help="queue statistics of a server",
        description="Client commands for the export queue.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    queue_commands = queue.add_subparsers(dest="queue_command", required=True)
    leaf(queue_commands, "stats", "exports by state, live workers, oldest queued age", _stats)

    verify = leaf(
        commands,
        "verify",
        "check a downloaded export bundle against its signed manifest (offline with "
        "--public-key; otherwise the key is fetched from the server at --target)",
        _verify,
    )
    verify.add_argument(
        "directory", type=Path, help="the folder `export download` wrote (or one attempt in it)"
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="the service's public key(s): PEM (from GetManifestSigningKey; after a rotation, "
        "its keys concatenated) or base64",
    )
    add_camera_commands(commands, common)


# ---------------------------------------------------------------------------------------------
# Running a command


def run_client_command(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    try:
        return asyncio.run(_run(args))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _run(args: argparse.Namespace) -> int:
    try:
        client = _open_client(args)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    async with client:
        try:
            code: int = await args.handler(args, client)
            return code
        except ServiceError as exc:
            _report_error(args, exc)
            return EXIT_UNREACHABLE if exc.code in UNREACHABLE_CODES else EXIT_REFUSED
        except DownloadError as exc:
            _report(args, {"error": {"kind": "download", "message": str(exc)}})
            print(f"sparc-video: download failed: {exc}", file=sys.stderr)
            return EXIT_DOWNLOAD


def _open_client(args: argparse.Namespace) -> ChannelClient:
    token = os.environ.get("SPARC_VIDEO_TOKEN") or None
    if args.token_file is not None:
        token = args.token_file.read_text().strip()

    def pem(path: Path | None) -> bytes | None:
        return path.read_bytes() if path is not None else None

    client_type: type[ChannelClient] = args.client_type
    return client_type(
        args.target,
        tls=args.tls,
        ca_cert=pem(args.ca_cert),
        client_cert=pem(args.client_cert),
        client_key=pem(args.client_key),
        token=token,
        server_name=args.server_name,
        timeout=args.timeout,
    )


def _report_error(args: argparse.Namespace, error: ServiceError) -> None:
    _report(
        args,
        {
            "error": {
                "code": error.code.name,
                "message": error.message,
                "reason": error.reason,
                "domain": error.domain,
                "metadata": error.metadata,
                "fieldViolations": [
                    {"field": v.field, "description": v.description} for v in error.field_violations
                ],
            }
        },
    )
    hint = ""
    if error.code in UNREACHABLE_CODES:
        hint = f" (target {args.target})"
    print(f"sparc-video: {error}{hint}", file=sys.stderr)


def _report(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """In JSON mode, errors also go to stdout as an object, for scripts that parse it."""
    if args.output == "json":
        print(json.dumps(data), flush=True)


def _json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _print_json(message: Message) -> None:
    print(json.dumps(_json(message), indent=2), flush=True)


def _exit_code(export: Export) -> int:
    if export.state == Export.STATE_FAILED:
        return EXIT_FAILED
    if export.state == Export.STATE_CANCELLED:
        return EXIT_CANCELLED
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Commands


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


def _enum_choices(fd: FieldDescriptor) -> dict[str, int]:
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
            choices = _enum_choices(fd)
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
            seconds = float(value.removesuffix("s"))
            message = duration_pb2.Duration()
            message.FromNanoseconds(int(seconds * 1e9))
            return message
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
            name += "=" + "|".join(_enum_choices(fd))
        elif fd.is_repeated:
            name += " (repeatable)"
        keys.append(name)
    # argparse %-formats help strings.
    return (f"{kind} operation; keys: " + ", ".join(keys)).replace("%", "%%")


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
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time like 2026-11-24T08:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone; add Z or +HH:MM")
    return value


_GAP_MODES = {
    "close": export_pb2.CameraTimeRange.GAP_MODE_CLOSE,
    "slate": export_pb2.CameraTimeRange.GAP_MODE_SLATE,
}


def parse_source(args: argparse.Namespace) -> export_pb2.ExportSource:
    """The one source the flags name: an object key, --recording, or --camera with a range."""
    given = [f for f, v in (("SOURCE", args.source), ("--recording", args.recording),
                            ("--camera", args.camera)) if v]  # fmt: skip
    if len(given) != 1:
        raise UsageError(
            "give one source: a storage key, --recording NAME, or --camera NAME --from T --to T"
            + (f" (not {' and '.join(given)})" if given else "")
        )
    range_flags = args.start or args.end or args.gaps or args.wall_clock_subtitles
    if not args.camera and range_flags:
        raise UsageError("--from, --to, --gaps and --wall-clock-subtitles go with --camera")
    if args.recording:
        name = args.recording
        return export_pb2.ExportSource(recording=name)
    if args.camera:
        if not args.start or not args.end:
            raise UsageError("--camera needs --from and --to")
        wanted = export_pb2.CameraTimeRange(
            camera=args.camera if args.camera.startswith("cameras/") else f"cameras/{args.camera}",
            gap_mode=_GAP_MODES[args.gaps or "close"],
            wall_clock_subtitles=args.wall_clock_subtitles,
        )
        wanted.start_time.FromDatetime(args.start)
        wanted.end_time.FromDatetime(args.end)
        return export_pb2.ExportSource(camera_range=wanted)
    return export_pb2.ExportSource(object_key=args.source)


def parse_operations(operations: Sequence[tuple[str, str]]) -> list[export_pb2.Operation]:
    if not operations:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in OPERATION_KINDS)
        raise UsageError(f"give at least one operation ({flags})")
    return [parse_operation(kind, text) for kind, text in operations]


async def _create(args: argparse.Namespace, client: AsyncExportClient) -> int:
    source = parse_source(args)
    operations = parse_operations(args.operations or [])
    export = await client.create_export(
        source,
        operations,
        request_id=args.request_id,
        case_id=args.case_id,
        purpose=args.purpose,
    )
    if not args.watch:
        if args.output == "json":
            _print_json(export)
        else:
            print(export.name, flush=True)
        return EXIT_OK
    if args.output == "text":
        print(export.name, flush=True)
    return await _follow(args, client, export.name)


async def _watch(args: argparse.Namespace, client: AsyncExportClient) -> int:
    return await _follow(args, client, export_name(args.name))


async def _follow(args: argparse.Namespace, client: AsyncExportClient, name: str) -> int:
    view = WatchView(Display(sys.stderr, "none" if args.output == "json" else args.progress))
    final: Export | None = None
    try:
        async for message in client.watch_export(
            name, reconnect_timeout=args.reconnect_timeout, on_reconnect=view.reconnecting
        ):
            final = message.export
            if args.output == "json":
                print(json.dumps(_json(message)), flush=True)
            else:
                view.update(message)
    finally:
        view.finish()
    assert final is not None, "a watch yields at least its snapshot"
    if args.output == "text":
        print(describe_export(final), flush=True)
    return _exit_code(final)


async def _get(args: argparse.Namespace, client: AsyncExportClient) -> int:
    export = await client.get_export(args.name)
    if args.output == "json":
        _print_json(export)
    else:
        print(describe_export(export))
    return EXIT_OK


async def _list(args: argparse.Namespace, client: AsyncExportClient) -> int:
    state = (args.state or "").removeprefix("STATE_")
    if args.all:
        exports = [e async for e in client.iter_exports(state=state, page_size=args.page_size)]
        page = export_service_pb2.ListExportsResponse(exports=exports)
    else:
        page = await client.list_exports(
            page_size=args.page_size, page_token=args.page_token, state=state
        )
    if args.output == "json":
        _print_json(page)
        return EXIT_OK
    rows = [("NAME", "STATE", "PROGRESS", "CREATED", "SOURCE")]
    for export in page.exports:
        progress = ""
        if export.state == Export.STATE_RUNNING:
            progress = f"{export.progress.percent:.1f}% {export.progress.current_operation}"
        rows.append(
            (
                export.name,
                state_name(export.state),
                progress,
                utc(export.create_time),
                source_text(export.source),
            )
        )
    print(_table(rows))
    if page.next_page_token:
        print(f"more: --page-token {page.next_page_token}", file=sys.stderr)
    return EXIT_OK


async def _cancel(args: argparse.Namespace, client: AsyncExportClient) -> int:
    export = await client.cancel_export(args.name)
    if args.output == "json":
        _print_json(export)
    else:
        print(f"{export.name}: {state_name(export.state)}")
    return EXIT_OK


async def _download(args: argparse.Namespace, client: AsyncExportClient) -> int:
    name = export_name(args.name)
    directory = args.directory or Path(name.rsplit("/", 1)[-1])
    display = Display(sys.stderr, "none" if args.output == "json" else args.progress)
    try:
        files = await client.download_outputs(name, directory, progress=DownloadView(display))
    finally:
        display.end_bar()
    if args.output == "json":
        print(json.dumps({"files": [_file_json(f) for f in files]}, indent=2))
    else:
        for file in files:
            print(file.path)
    return EXIT_OK


_BUNDLE_EXIT_CODES: tuple[tuple[type[BundleError], int], ...] = (
    (UnknownKey, EXIT_UNKNOWN_KEY),
    (MissingFile, EXIT_MISSING_FILE),
    (HashMismatch, EXIT_HASH_MISMATCH),
    (BundleError, EXIT_BAD_SIGNATURE),
)


async def _verify(args: argparse.Namespace, client: AsyncExportClient) -> int:
    if args.public_key is not None:
        try:
            keys = keyring(read_public_keys_file(args.public_key))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--public-key: {exc}") from None
    else:
        published = await client.get_manifest_signing_key()
        # Every key the service vouches for (current and retired): the signature names its own.
        pems = [k.public_key_pem for k in published.verification_keys] or [published.public_key_pem]
        keys = keyring(parse_public_key(pem) for pem in pems)
    try:
        bundle = await asyncio.to_thread(verify_bundle, args.directory, keys)
    except BundleError as exc:
        code = next(code for kind, code in _BUNDLE_EXIT_CODES if isinstance(exc, kind))
        _report(args, {"valid": False, "error": {"kind": type(exc).__name__, "message": str(exc)}})
        print(f"sparc-video: verify: INVALID: {exc}", file=sys.stderr)
        return code
    if args.output == "json":
        report = {
            "valid": True,
            "manifest": str(bundle.manifest_path),
            "export": bundle.manifest.get("export", ""),
            "keyId": bundle.key_id,
            "files": [
                {"path": str(f.path), "storageKey": f.storage_key, "sha256": f.sha256}
                for f in bundle.files
            ],
        }
        print(json.dumps(report, indent=2))
    else:
        print(
            f"valid: {bundle.manifest.get('export', '')}: signature by {bundle.key_id} ok, "
            f"{len(bundle.files)} output(s) match {bundle.manifest_path}"
        )
    return EXIT_OK


def _file_json(file: DownloadedFile) -> dict[str, Any]:
    return {
        "path": str(file.path),
        "storageKey": file.storage_key,
        "sizeBytes": file.size_bytes,
        "sha256": file.sha256,
        "verified": True,
        "alreadyPresent": file.already_present,
    }


async def _stats(args: argparse.Namespace, client: AsyncExportClient) -> int:
    stats = await client.get_queue_stats()
    if args.output == "json":
        _print_json(stats)
        return EXIT_OK
    oldest = seconds(stats.oldest_queued_age)
    rows = [
        ("queued", str(stats.queued), f"oldest {oldest:.1f} s" if stats.queued else ""),
        ("running", str(stats.running), ""),
        ("retrying", str(stats.retrying), ""),
        ("succeeded", str(stats.succeeded), ""),
        ("failed", str(stats.failed), ""),
        ("cancelled", str(stats.cancelled), ""),
        ("workers", str(stats.workers), "heartbeat in the last 30 s"),
    ]
    print(_table(rows))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Text rendering


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


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
                    names = {v: k for k, v in _enum_choices(fd).items()}
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


def describe_export(export: Export) -> str:
    lines = [f"{export.name}  {state_name(export.state)}"]

    def field(label: str, value: str) -> None:
        lines.append(f"  {label + ':':<12}{value}")

    field("source", source_text(export.source))
    if export.HasField("capture_start_time"):
        field("captured", f"from {utc(export.capture_start_time)}")
    if export.HasField("coverage"):
        coverage = export.coverage
        covered = seconds(coverage.covered_duration)
        gap = seconds(coverage.gap_duration)
        field("coverage", f"{covered:.2f} s of footage, {gap:.2f} s without")
        for span in coverage.spans:
            field("", f"{utc(span.start_time)} - {utc(span.end_time)}  {span.recording}")
        for hole in coverage.gaps:
            field("", f"{utc(hole.start_time)} - {utc(hole.end_time)}  NO RECORDING")
    for index, operation in enumerate(export.operations):
        field("operations" if index == 0 else "", f"{index + 1}. {describe_operation(operation)}")
    if export.attempt:
        field("attempt", str(export.attempt))
    if export.request_id:
        field("request id", export.request_id)
    if export.requester:
        field("requester", export.requester)
    if export.case_id:
        field("case", export.case_id)
    if export.purpose:
        field("purpose", export.purpose.replace("\n", " "))
    field("created", utc(export.create_time))
    if export.HasField("start_time"):
        field("started", utc(export.start_time))
    if export.HasField("end_time"):
        took = export.end_time.seconds - export.create_time.seconds
        field("ended", f"{utc(export.end_time)} ({took} s after creation)")
    if export.state == Export.STATE_RUNNING:
        progress = export.progress
        field(
            "progress",
            f"{progress.percent:.1f}% {progress.current_operation} "
            f"({progress.operation_index + 1}/{progress.operation_count}) at "
            f"{media_time(seconds(progress.timemark))}",
        )
    if export.HasField("next_attempt_time"):
        field("next try", utc(export.next_attempt_time))
    for index, output in enumerate(export.outputs):
        detail = [output.storage_key, output.content_type]
        if output.width:
            detail.append(f"{output.width}x{output.height}")
        if output.kind == export_pb2.Output.KIND_VIDEO:
            detail.append(f"{seconds(output.duration):.2f} s {output.video_codec}")
        else:
            detail.append(f"at {media_time(seconds(output.timestamp))}")
        detail += [size(output.size_bytes), f"sha256 {output.sha256[:16]}…"]
        field("outputs" if index == 0 else "", "  ".join(detail))
    if export.HasField("manifest"):
        field("manifest", f"{export.manifest.storage_key}  signed by {export.manifest.key_id}")
    if export.download_grants:
        last = export.download_grants[-1]
        field(
            "downloads",
            f"{len(export.download_grants)} grant(s), last {utc(last.grant_time)}"
            + (f" to {last.requester}" if last.requester else ""),
        )
    error = export_error_text(export)
    if error:
        field("error", error)
    return "\n".join(lines)
