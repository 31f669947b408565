"""A bounded fuzz of every RPC of both services: no answer is UNKNOWN or INTERNAL, none hangs.

Requests are built from the proto descriptors, so a field added to any request is fuzzed too:
huge and empty strings, control characters, names that try to climb out of their collection,
negative and extreme numbers, enum values no version of the proto defines, timestamps and
durations outside protobuf's valid range, and bytes that do not decode as the request at all.
Every call has a deadline; DEADLINE_EXCEEDED counts as a hang.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sparc.video.v1 import camera_service_pb2, export_service_pb2, upload_service_pb2

from tests.fixtures.background import background_service

# Deliberate answers to a request the server refuses or cannot find; OK is allowed too (a fuzzed
# request may well be valid). UNAVAILABLE: a fuzzed but valid camera that cannot be reached.
DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED,
}
DEADLINE_S = 20.0

METHODS: list[MethodDescriptor] = [
    method
    for module in (export_service_pb2, camera_service_pb2, upload_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]

names = st.sampled_from(
    [
        "",
        "exports/../x",
        "cameras/../../etc/passwd",
        "cameras/x/recordings/../../y",
        "exports/0123456789abcdef0123",
        "cameras/\x00",
        "recordings/%2e%2e",
        "a" * 5000,
        "rtsp://127.0.0.1:1/x",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "state = FAILED",
        "\u202e\ufeff",
    ]
)
strings = (
    names
    | st.text(max_size=30)
    | st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=10)
    | st.just("x" * 300_000)
)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, -1, 0, 1, 2**31 - 1, 10**12) if low <= v <= high]
    return st.sampled_from(edges) | st.integers(low, high)


def seconds_and_nanos(limit: int) -> st.SearchStrategy[dict[str, int]]:
    """Timestamps and durations: valid ones, and ones outside protobuf's range (year 1 to 9999
    for a Timestamp, ±10,000 years for a Duration, nanos within ±999,999,999 and of the
    seconds' sign)."""
    seconds = st.sampled_from([-limit - 1, -limit, 0, 1, limit, limit + 1, -(2**63), 2**63 - 1])
    nanos = st.sampled_from([0, 1, -1, 999_999_999, 10**9, -(10**9), 2**31 - 1, -(2**31)])
    return st.fixed_dictionaries(
        {"seconds": seconds | st.integers(-limit, limit), "nanos": nanos | st.just(0)}
    )


WELL_KNOWN: dict[str, Callable[[], st.SearchStrategy[dict[str, int]]]] = {
    # 0001-01-01 and 9999-12-31T23:59:59 in seconds since the epoch.
    "google.protobuf.Timestamp": lambda: seconds_and_nanos(253_402_300_799),
    "google.protobuf.Duration": lambda: seconds_and_nanos(315_576_000_000),
}


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        width = 32 if kind == FieldDescriptor.TYPE_FLOAT else 64
        return st.floats(width=width)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.sampled_from(known) | st.sampled_from([-1, 99, 2**31 - 1])
    low, high = INT_RANGES[kind]
    return integers(low, high)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name in WELL_KNOWN:
        return WELL_KNOWN[descriptor.full_name]().map(lambda values: cls(**values))
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = scalar(field.message_type.fields_by_name["key"])
            value = scalar(field.message_type.fields_by_name["value"])
            optional[field.name] = st.dictionaries(key, value, max_size=3)
            continue
        if field.message_type is not None:
            if depth >= 4:
                continue
            inner = st.deferred(lambda f=field: messages(f.message_type, depth + 1))
        else:
            inner = scalar(field)
        repeated = field.is_repeated
        optional[field.name] = st.lists(inner, max_size=3) if repeated else inner
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: build(cls, values))


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.update(value)
        elif field.is_repeated:
            for item in value:
                if field.message_type is not None:
                    target.add().CopyFrom(item)
                else:
                    target.append(item)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


@pytest.fixture(scope="module")
def channel(
    redis_url: str, shared_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[grpc.Channel]:
    # Fuzzed cameras point at loopback and private addresses; the policy accepts these so the
    # calls go past validation into probing, snapshots and recordings.
    with background_service(
        redis_url,
        shared_database_url,
        tmp_path_factory.mktemp("fuzz"),
        camera_allowed_networks=("127.0.0.0/8", "10.0.0.0/8"),
    ) as service:
        yield service.channel


def call(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path)(payload, timeout=DEADLINE_S)
            try:
                next(iter(stream), None)
            finally:
                stream.cancel()
        else:
            channel.unary_unary(path)(payload, timeout=DEADLINE_S)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        if code == grpc.StatusCode.CANCELLED and method.server_streaming:
            return grpc.StatusCode.OK
        assert code in DELIBERATE, (method.name, code, exc.details())
        assert exc.details(), (method.name, code)
        return code
    return grpc.StatusCode.OK


FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@FUZZ
@given(data=st.data())
def test_fuzzed_requests_get_deliberate_answers(
    channel: grpc.Channel, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(messages(method.input_type), label="request")
    call(channel, method, request.SerializeToString())


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@FUZZ
@given(
    payload=st.sampled_from([b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x12\x05ab"])
    | st.binary(min_size=1, max_size=40)
)
def test_undecodable_requests_are_invalid_arguments(
    channel: grpc.Channel, method: MethodDescriptor, payload: bytes
) -> None:
    try:
        method.input_type._concrete_class.FromString(payload)
    except Exception:
        assert call(channel, method, payload) == grpc.StatusCode.INVALID_ARGUMENT
    else:
        call(channel, method, payload)  # it happened to decode: any deliberate answer


def _bad_fields(error: grpc.RpcError) -> list[str]:
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            fields = []
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    fields += [violation.field for violation in bad.field_violations]
            return fields
    raise AssertionError(f"no google.rpc.Status in {error!r}")


def test_times_outside_protobufs_range_name_their_field(channel: grpc.Channel) -> None:
    """Each request type with a time field, one bad Timestamp or Duration each."""
    export_request = export_service_pb2.CreateExportRequest()
    export_request.export.source.camera_range.camera = "cameras/c1"
    export_request.export.source.camera_range.start_time.seconds = 253_402_300_800  # year 10000
    export_request.export.source.camera_range.end_time.seconds = 1
    listing = camera_service_pb2.ListRecordingsRequest(parent="cameras/c1")
    listing.start_time.seconds = -62_135_596_801  # before year 1
    recording = camera_service_pb2.CreateRecordingRequest(parent="cameras/c1")
    recording.recording.start_time.nanos = -1
    probe = camera_service_pb2.ProbeCameraRequest(name="cameras/c1")
    probe.timeout.seconds, probe.timeout.nanos = 5, -1  # nanos of the other sign
    cases = [
        ("ExportService", "CreateExport", export_request, "export.source.camera_range.start_time"),
        ("CameraService", "ListRecordings", listing, "start_time"),
        ("CameraService", "CreateRecording", recording, "recording.start_time"),
        ("CameraService", "ProbeCamera", probe, "timeout"),
    ]
    for service, method, request, field in cases:
        call = channel.unary_unary(f"/sparc.video.v1.{service}/{method}")
        with pytest.raises(grpc.RpcError) as refused:
            call(request.SerializeToString(), timeout=DEADLINE_S)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert _bad_fields(refused.value) == [field], (method, refused.value.details())
