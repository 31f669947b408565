"""Tokens, JWTs, settings and calls shared by the authentication tests (test_auth*.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import jwt
from google.protobuf import descriptor, message_factory
from sparc.video.v1 import (
    audit_service_pb2,
    camera_service_pb2,
    export_pb2,
    export_service_pb2,
    upload_service_pb2,
)

from sparc_video.client import (
    thumbnail,
)
from sparc_video.core.settings import Settings, StaticToken
from sparc_video.security.roles import Role
from tests.camera_helpers import status_of
from tests.fixtures.service import RunningService, start_service

ISSUER = "https://id.example.test"
AUDIENCE = "sparc-video"
JWT_SECRET = "hs256-secret-for-tests-" + "x" * 24
TOKENS = {
    "viewer-1": (Role.VIEWER, "static-viewer-token-0123456789"),
    "op-a": (Role.OPERATOR, "static-operator-a-token-0123456789"),
    "op-b": (Role.OPERATOR, "static-operator-b-token-0123456789"),
    "admin-1": (Role.ADMIN, "static-admin-token-0123456789"),
}
SERVICES = [
    export_service_pb2.DESCRIPTOR.services_by_name["ExportService"],
    camera_service_pb2.DESCRIPTOR.services_by_name["CameraService"],
    upload_service_pb2.DESCRIPTOR.services_by_name["UploadService"],
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
]
# What an allowed call with an empty request may answer: it got past authorization.
ADMITTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}
Metadata = tuple[tuple[str, str], ...]


def static_tokens() -> tuple[StaticToken, ...]:
    return tuple(StaticToken(pid, role, token) for pid, (role, token) in TOKENS.items())


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def as_static(principal: str) -> Metadata:
    return bearer(TOKENS[principal][1])


def make_jwt(
    subject: str,
    role: Any,
    *,
    key: Any = JWT_SECRET,
    algorithm: str = "HS256",
    expires_in: float = 300,
    audience: str = AUDIENCE,
    issuer: str = ISSUER,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + int(expires_in),
    }
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, key, algorithm=algorithm)


def auth_settings(service_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_disabled": False,
        "auth_static_tokens": static_tokens(),
        "auth_jwt_secret": JWT_SECRET,
        "auth_jwt_issuer": ISSUER,
        "auth_jwt_audience": AUDIENCE,
        "quota_requests_per_minute": 0,
    }
    return service_settings(**{**values, **overrides})


def detail(error: grpc.aio.AioRpcError, kind: type[Any]) -> Any:
    for item in status_of(error).details:
        message = kind()
        if item.Unpack(message):
            return message
    raise AssertionError(f"no {kind.__name__} in {error!r}")


def all_methods() -> list[tuple[str, descriptor.MethodDescriptor]]:
    return [(f"/{s.full_name}/{m.name}", m) for s in SERVICES for m in s.methods]


async def code_of(
    channel: grpc.aio.Channel, path: str, method: descriptor.MethodDescriptor, metadata: Metadata
) -> grpc.StatusCode:
    """Call `method` with an empty request; the status code it ends with."""
    request = message_factory.GetMessageClass(method.input_type)()
    serialize = type(request).SerializeToString
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=serialize)(
                request, metadata=metadata, timeout=10
            )
            await stream.read()
            stream.cancel()
        else:
            await channel.unary_unary(path, request_serializer=serialize)(
                request, metadata=metadata, timeout=10
            )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@contextlib.asynccontextmanager
async def service_with(settings: Settings) -> AsyncIterator[RunningService]:
    async with start_service(settings, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        yield service


def create_request(request_id: str = "") -> export_service_pb2.CreateExportRequest:
    return export_service_pb2.CreateExportRequest(
        export=export_pb2.Export(
            source=export_pb2.ExportSource(object_key="in/a.mp4"),
            operations=[thumbnail()],
        ),
        request_id=request_id,
    )
