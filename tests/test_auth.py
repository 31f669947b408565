"""Authentication, authorization, ownership and per-principal quotas, against the real server.

Every RPC of ExportService and CameraService is called without credentials, with bad ones and as
each role (static tokens, HS256/RS256/ES256/EdDSA JWTs, client certificates); exports are
private to their requester; quotas are shared through Redis by every replica.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from google.protobuf import descriptor, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sparc.video.v1 import (
    audit_service_pb2,
    camera_service_pb2,
    export_pb2,
    export_service_pb2,
    upload_service_pb2,
)
from sparc.video.v1 import export_service_pb2_grpc as export_grpc

from sparc_video.api.auth_interceptor import AuthInterceptor
from sparc_video.api.server import Server
from sparc_video.api.status import ErrorInterceptor
from sparc_video.app import open_app
from sparc_video.client import (
    AsyncExportClient,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    error_from_rpc,
    thumbnail,
)
from sparc_video.core.settings import Settings, SettingsError, StaticToken
from sparc_video.observability.logs import Redactor, settings_secrets
from sparc_video.observability.tracing import setup_tracing
from sparc_video.security.auth import Authenticator, AuthNotConfigured
from sparc_video.security.roles import METHOD_ROLES, Role
from tests.camera_helpers import expect_error as expect
from tests.camera_helpers import status_of
from tests.fixtures.service import RunningService, settings_env, start_service
from tests.pki import CertificateAuthority, Issued
from tests.secret_checks import assert_in_none, logged_text, redis_contents
from tests.test_cli import client_env, sparc_video

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


# ---------------------------------------------------------------------------------------------
# The table and every RPC


def test_every_rpc_is_in_the_role_table_and_nothing_else_is() -> None:
    assert {path for path, _ in all_methods()} == set(METHOD_ROLES)
    admin_only = {p.rsplit("/", 1)[1] for p, r in METHOD_ROLES.items() if r == Role.ADMIN}
    assert {"GetQueueStats", "DeleteCamera"} <= admin_only


async def test_every_rpc_without_credentials_with_bad_ones_and_as_each_role(
    service_settings: Callable[..., Settings],
) -> None:
    other_key = "another-hs256-secret-" + "y" * 30
    refused: dict[str, tuple[Metadata, str]] = {
        "no credentials": ((), "CREDENTIALS_MISSING"),
        "unknown token": (bearer("not-a-configured-token-123456"), "INVALID_TOKEN"),
        "basic auth": ((("authorization", "Basic dXNlcjpwYXNz"),), "INVALID_CREDENTIALS"),
        "expired jwt": (bearer(make_jwt("al", "admin", expires_in=-3600)), "TOKEN_EXPIRED"),
        "jwt for another audience": (
            bearer(make_jwt("al", "admin", audience="other")),
            "INVALID_TOKEN",
        ),
        "jwt of another issuer": (bearer(make_jwt("al", "admin", issuer="evil")), "INVALID_TOKEN"),
        "jwt signed with another key": (
            bearer(make_jwt("al", "admin", key=other_key)),
            "INVALID_TOKEN",
        ),
        "unsigned jwt": (
            bearer(jwt.encode({"sub": "al", "role": "admin"}, None, algorithm="none")),
            "INVALID_TOKEN",
        ),
    }
    roles: dict[str, tuple[Metadata, Role | None]] = {
        "static viewer": (as_static("viewer-1"), Role.VIEWER),
        "static operator": (as_static("op-a"), Role.OPERATOR),
        "static admin": (as_static("admin-1"), Role.ADMIN),
        "jwt viewer": (bearer(make_jwt("v", "viewer")), Role.VIEWER),
        "jwt operator": (bearer(make_jwt("o", ["viewer", "operator"])), Role.OPERATOR),
        "jwt admin": (bearer(make_jwt("a", "admin")), Role.ADMIN),
        "jwt without role": (bearer(make_jwt("n", None)), None),
        "jwt with unknown role": (bearer(make_jwt("n", "superuser")), None),
    }
    async with service_with(auth_settings(service_settings)) as service:
        channel = service.channel
        for path, method in all_methods():
            for label, (metadata, reason) in refused.items():
                call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
                if method.server_streaming:
                    code = await code_of(channel, path, method, metadata)
                    assert code == grpc.StatusCode.UNAUTHENTICATED, (path, label, code)
                    continue
                request = message_factory.GetMessageClass(method.input_type)()
                error = await expect(
                    call(request, metadata=metadata), grpc.StatusCode.UNAUTHENTICATED
                )
                assert detail(error, error_details_pb2.ErrorInfo).reason == reason, (path, label)
            needed = METHOD_ROLES[path]
            for label, (metadata, role) in roles.items():
                code = await code_of(channel, path, method, metadata)
                if role is not None and role >= needed:
                    assert code in ADMITTED, (path, label, code)
                else:
                    assert code == grpc.StatusCode.PERMISSION_DENIED, (path, label, code)


async def test_a_method_missing_from_the_table_is_refused_even_to_admins(
    service_settings: Callable[..., Settings],
) -> None:
    async def call(request: bytes, context: Any) -> bytes:
        return b"served"

    interceptor = AuthInterceptor(Authenticator(auth_settings(service_settings)), None)
    server = grpc.aio.server(interceptors=[ErrorInterceptor(), interceptor])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Unlisted", {"Call": grpc.unary_unary_rpc_method_handler(call)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            rpc = channel.unary_unary("/test.Unlisted/Call")
            await expect(rpc(b"", metadata=()), grpc.StatusCode.UNAUTHENTICATED)
            error = await expect(
                rpc(b"", metadata=as_static("admin-1")), grpc.StatusCode.PERMISSION_DENIED
            )
            assert "not in the authorization table" in (error.details() or "")
    finally:
        await server.stop(0)


async def test_permission_denied_says_which_role_is_needed(
    service_settings: Callable[..., Settings],
) -> None:
    async with service_with(auth_settings(service_settings)) as service:
        stub = service.exports
        error = await expect(
            stub.GetQueueStats(
                export_service_pb2.GetQueueStatsRequest(), metadata=as_static("op-a")
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert "'op-a' has the operator role; GetQueueStats needs admin" in (error.details() or "")
        await expect(
            stub.CreateExport(create_request(), metadata=as_static("viewer-1")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        stats = await stub.GetQueueStats(
            export_service_pb2.GetQueueStatsRequest(), metadata=as_static("admin-1")
        )
        assert stats.queued == 0


def _public_key_pem(private: Any) -> str:
    return str(
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate),
    ],
)
async def test_jwts_signed_with_a_private_key_are_checked_with_its_public_key(
    service_settings: Callable[..., Settings], algorithm: str, make_key: Callable[[], Any]
) -> None:
    private, stranger = make_key(), make_key()
    public_pem = _public_key_pem(private)
    settings = auth_settings(
        service_settings,
        auth_static_tokens=(),
        auth_jwt_secret=None,
        auth_jwt_public_key=public_pem,
    )
    async with service_with(settings) as service:
        stub = service.exports
        request = export_service_pb2.GetQueueStatsRequest()
        good = make_jwt("boss", "admin", key=private, algorithm=algorithm)
        await stub.GetQueueStats(request, metadata=bearer(good))
        forged = make_jwt("boss", "admin", key=stranger, algorithm=algorithm)
        await expect(
            stub.GetQueueStats(request, metadata=bearer(forged)), grpc.StatusCode.UNAUTHENTICATED
        )
        # Algorithm confusion: an HS256 token keyed with the (public) key's PEM is refused.
        claims = {"sub": "boss", "role": "admin", "iss": ISSUER, "aud": AUDIENCE}
        confused = hs256_token(public_pem.encode(), {**claims, "exp": int(time.time()) + 300})
        await expect(
            stub.GetQueueStats(request, metadata=bearer(confused)),
            grpc.StatusCode.UNAUTHENTICATED,
        )


def hs256_token(key: bytes, claims: dict[str, Any]) -> str:
    """A JWT made by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + part(signature)).decode()


# ---------------------------------------------------------------------------------------------
# Ownership and idempotency


async def test_exports_are_private_to_their_requester_and_admins_see_all(
    service_settings: Callable[..., Settings],
) -> None:
    async with service_with(auth_settings(service_settings)) as service:
        stub = service.exports
        a, b, admin = as_static("op-a"), as_static("op-b"), as_static("admin-1")
        mine = await stub.CreateExport(create_request(), metadata=a)
        theirs = await stub.CreateExport(create_request(), metadata=b)
        assert (mine.requester, theirs.requester) == ("op-a", "op-b")
        assert (
            await stub.GetExport(export_service_pb2.GetExportRequest(name=mine.name), metadata=a)
        ).requester == "op-a"

        missing = "exports/0000000000000000dead"
        for name in (mine.name, missing):
            calls = [
                stub.GetExport(export_service_pb2.GetExportRequest(name=name), metadata=b),
                stub.CancelExport(export_service_pb2.CancelExportRequest(name=name), metadata=b),
                stub.GetExportDownloadUrl(
                    export_service_pb2.GetExportDownloadUrlRequest(name=name), metadata=b
                ),
            ]
            details = []
            for call in calls:
                error = await expect(call, grpc.StatusCode.NOT_FOUND)
                details.append((error.details() or "").replace(name.split("/")[1], "ID"))
            watch = stub.WatchExport(export_service_pb2.WatchExportRequest(name=name), metadata=b)
            error = await expect(watch.read(), grpc.StatusCode.NOT_FOUND)
            details.append((error.details() or "").replace(name.split("/")[1], "ID"))
            # Someone else's export reads exactly like one that does not exist.
            assert details == ["export 'ID' does not exist"] * 4, details
        # B's failed cancel left A's export alone.
        got = await stub.GetExport(export_service_pb2.GetExportRequest(name=mine.name), metadata=a)
        assert got.state == export_pb2.Export.STATE_QUEUED

        async def listed(metadata: Metadata, filter: str = "") -> list[str]:
            page = await stub.ListExports(
                export_service_pb2.ListExportsRequest(filter=filter), metadata=metadata
            )
            return [e.name for e in page.exports]

        assert await listed(a) == [mine.name]
        assert await listed(b) == [theirs.name]
        assert await listed(as_static("viewer-1")) == []
        assert await listed(admin) == [theirs.name, mine.name]
        assert await listed(a, "state = QUEUED") == [mine.name]

        # Admins read, watch and cancel anyone's export.
        watch = stub.WatchExport(
            export_service_pb2.WatchExportRequest(name=mine.name), metadata=admin
        )
        assert (await watch.read()).export.name == mine.name
        watch.cancel()
        cancelled = await stub.CancelExport(
            export_service_pb2.CancelExportRequest(name=mine.name), metadata=admin
        )
        assert cancelled.state == export_pb2.Export.STATE_CANCELLED
        assert await listed(a, "state = QUEUED") == []
        assert await listed(a, "state = CANCELLED") == [mine.name]


async def test_list_pages_through_own_exports_with_a_filter(
    service_settings: Callable[..., Settings],
) -> None:
    async with service_with(auth_settings(service_settings)) as service:
        stub = service.exports
        a, b = as_static("op-a"), as_static("op-b")
        names = []
        for _ in range(5):
            names.append((await stub.CreateExport(create_request(), metadata=a)).name)
            await stub.CreateExport(create_request(), metadata=b)
        seen: list[str] = []
        token = ""
        while True:
            page = await stub.ListExports(
                export_service_pb2.ListExportsRequest(
                    page_size=2, page_token=token, filter="state = QUEUED"
                ),
                metadata=a,
            )
            seen += [e.name for e in page.exports]
            token = page.next_page_token
            if not token:
                break
        assert seen == names[::-1]
        # A token of a listing is bound to it: not usable for another filter.
        first = await stub.ListExports(
            export_service_pb2.ListExportsRequest(page_size=1), metadata=a
        )
        await expect(
            stub.ListExports(
                export_service_pb2.ListExportsRequest(
                    page_token=first.next_page_token, filter="state = QUEUED"
                ),
                metadata=a,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def test_request_ids_are_per_principal(service_settings: Callable[..., Settings]) -> None:
    async with service_with(auth_settings(service_settings)) as service:
        stub = service.exports
        first = await stub.CreateExport(create_request("req-1"), metadata=as_static("op-a"))
        again = await stub.CreateExport(create_request("req-1"), metadata=as_static("op-a"))
        other = await stub.CreateExport(create_request("req-1"), metadata=as_static("op-b"))
        assert again.name == first.name
        assert other.name != first.name and other.requester == "op-b"


# ---------------------------------------------------------------------------------------------
# Quotas


async def test_unfinished_exports_quota_per_principal(
    service_settings: Callable[..., Settings],
) -> None:
    settings = auth_settings(service_settings, quota_max_queued_exports=2)
    async with service_with(settings) as service:
        stub = service.exports
        a = as_static("op-a")
        first = await stub.CreateExport(create_request(), metadata=a)
        await stub.CreateExport(create_request(), metadata=a)
        error = await expect(
            stub.CreateExport(create_request(), metadata=a), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert "QUOTA_MAX_QUEUED_EXPORTS" in (error.details() or "")
        retry = detail(error, error_details_pb2.RetryInfo)
        assert retry.retry_delay.ToTimedelta().total_seconds() > 0
        quota = detail(error, error_details_pb2.QuotaFailure)
        assert quota.violations[0].subject == "principal:op-a"
        assert detail(error, error_details_pb2.ErrorInfo).reason == "QUEUED_EXPORTS_QUOTA"
        # Another principal has its own quota; a retried request_id is not a new export.
        await stub.CreateExport(create_request("r"), metadata=as_static("op-b"))
        await stub.CreateExport(create_request("r"), metadata=as_static("op-b"))
        # A finished export frees its place.
        await stub.CancelExport(export_service_pb2.CancelExportRequest(name=first.name), metadata=a)
        await stub.CreateExport(create_request(), metadata=a)


async def test_concurrent_creates_never_overshoot_the_quota(
    service_settings: Callable[..., Settings],
) -> None:
    settings = auth_settings(service_settings, quota_max_queued_exports=3)
    replica = settings.replace(http_port=service_settings().http_port)
    async with service_with(settings) as one, service_with(replica) as two:
        a = as_static("op-a")
        calls = [
            (one if n % 2 else two).exports.CreateExport(create_request(), metadata=a)
            for n in range(12)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
    created = [r for r in results if isinstance(r, export_pb2.Export)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 3, results
    assert len(refused) == 9
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}


async def test_request_rate_quota_is_shared_by_replicas(
    service_settings: Callable[..., Settings],
) -> None:
    settings = auth_settings(service_settings, quota_requests_per_minute=3)
    replica = settings.replace(http_port=service_settings().http_port)
    request = export_service_pb2.ListExportsRequest()
    async with service_with(settings) as one, service_with(replica) as two:
        a = as_static("op-a")
        await one.exports.ListExports(request, metadata=a)
        await two.exports.ListExports(request, metadata=a)
        await one.exports.ListExports(request, metadata=a)
        error = await expect(
            two.exports.ListExports(request, metadata=a), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        delay = detail(error, error_details_pb2.RetryInfo).retry_delay.ToTimedelta()
        assert 0 < delay.total_seconds() <= 60
        assert detail(error, error_details_pb2.QuotaFailure).violations[0].subject == (
            "principal:op-a"
        )
        assert detail(error, error_details_pb2.ErrorInfo).reason == "RATE_LIMITED"
        # The Python client's error hands the delay over.
        decoded = error_from_rpc(error)
        assert isinstance(decoded, ResourceExhaustedError)
        assert decoded.retry_after_s == delay.total_seconds()
        # Others are not held back, and health needs no quota.
        await two.exports.ListExports(request, metadata=as_static("op-b"))
        health = health_pb2_grpc.HealthStub(two.channel)
        for _ in range(5):
            await health.Check(health_pb2.HealthCheckRequest(service=""))


# ---------------------------------------------------------------------------------------------
# Health, reflection, fail closed


async def reflection_services(channel: grpc.aio.Channel, metadata: Metadata = ()) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=metadata
    )
    async for response in call:
        return [s.name for s in response.list_services_response.service]
    raise AssertionError("no reflection response")


@pytest.mark.parametrize("mode", ["public", "authenticated", "off"])
async def test_health_is_public_and_reflection_is_configurable(
    service_settings: Callable[..., Settings], mode: str
) -> None:
    async with service_with(auth_settings(service_settings, grpc_reflection=mode)) as service:
        health = health_pb2_grpc.HealthStub(service.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        if mode == "public":
            assert "sparc.video.v1.ExportService" in await reflection_services(service.channel)
        elif mode == "authenticated":
            await expect(reflection_services(service.channel), grpc.StatusCode.UNAUTHENTICATED)
            listed = await reflection_services(service.channel, as_static("viewer-1"))
            assert "sparc.video.v1.CameraService" in listed
        else:
            await expect(
                reflection_services(service.channel, as_static("admin-1")),
                grpc.StatusCode.UNIMPLEMENTED,
            )


async def test_a_server_without_auth_refuses_to_start(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(auth_disabled=False)
    async with open_app(settings) as app:
        with pytest.raises(AuthNotConfigured, match="AUTH_DISABLED=true"):
            Server(app)
    env = {**os.environ, **settings_env(settings)}
    assert env["AUTH_DISABLED"] == "false"
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sparc_video.cli.main",
        "serve",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await done.communicate()
    assert done.returncode == 1
    assert "no authentication is configured" in err.decode()


async def test_with_auth_disabled_every_caller_is_the_local_admin(
    service_settings: Callable[..., Settings],
) -> None:
    async with service_with(service_settings()) as service:
        created = await service.exports.CreateExport(create_request())
        assert created.requester == "local"
        await service.exports.GetQueueStats(export_service_pb2.GetQueueStatsRequest())


# ---------------------------------------------------------------------------------------------
# TLS: client certificates, and tokens over TLS from the Python client and the CLI


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    server: Issued
    bot: Issued  # SAN ops-bot.sparc.internal, mapped to operator
    cn_admin: Issued  # no SAN: its CN is its identity, mapped to admin
    stranger: Issued  # signed by the CA, mapped to nothing
    rogue: Issued  # the bot's names, signed by another CA


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = CertificateAuthority()
    return Pki(
        ca=ca,
        server=ca.issue("sparc-video", dns=("localhost",), ips=("127.0.0.1",), server=True),
        bot=ca.issue("ops-bot", dns=("ops-bot.sparc.internal",)),
        cn_admin=ca.issue("cn-admin"),
        stranger=ca.issue("stranger", dns=("stranger.sparc.internal",)),
        rogue=CertificateAuthority("rogue CA").issue("ops-bot", dns=("ops-bot.sparc.internal",)),
    )


def tls_channel(pki: Pki, target: str, client: Issued | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.aio.secure_channel(target, credentials)


def mtls_settings(
    service_settings: Callable[..., Settings], pki: Pki, **overrides: Any
) -> Settings:
    """Server TLS requiring client certificates of the test CA; the bot is an operator."""
    return service_settings(
        auth_disabled=False,
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=pki.ca.cert,
        auth_mtls_roles=(("ops-bot.sparc.internal", Role.OPERATOR), ("cn-admin", Role.ADMIN)),
        quota_requests_per_minute=0,
        **overrides,
    )


async def test_client_certificates_name_the_principal(
    service_settings: Callable[..., Settings], pki: Pki
) -> None:
    settings = mtls_settings(service_settings, pki)
    stats = export_service_pb2.GetQueueStatsRequest()
    async with service_with(settings) as service:
        async with tls_channel(pki, service.target, pki.bot) as channel:
            stub = export_grpc.ExportServiceStub(channel)
            created = await stub.CreateExport(create_request())
            assert created.requester == "ops-bot.sparc.internal"
            await expect(stub.GetQueueStats(stats), grpc.StatusCode.PERMISSION_DENIED)
        async with tls_channel(pki, service.target, pki.cn_admin) as channel:
            stub = export_grpc.ExportServiceStub(channel)
            assert (await stub.GetQueueStats(stats)).queued == 1
            got = await stub.GetExport(export_service_pb2.GetExportRequest(name=created.name))
            assert got.requester == "ops-bot.sparc.internal"
        async with tls_channel(pki, service.target, pki.stranger) as channel:
            stub = export_grpc.ExportServiceStub(channel)
            error = await expect(
                stub.ListExports(export_service_pb2.ListExportsRequest()),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert "'stranger.sparc.internal' has no role" in (error.details() or "")
            health = health_pb2_grpc.HealthStub(channel)
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
        # No certificate, or one from another CA: the handshake itself fails.
        for client in (None, pki.rogue):
            async with tls_channel(pki, service.target, client) as channel:
                stub = export_grpc.ExportServiceStub(channel)
                await expect(stub.GetQueueStats(stats, timeout=5), grpc.StatusCode.UNAVAILABLE)


async def test_every_rpc_over_mutual_tls_as_each_role(
    service_settings: Callable[..., Settings], pki: Pki
) -> None:
    """The whole role table again, with the principal taken from client certificates."""
    settings = mtls_settings(service_settings, pki, auth_mtls_default_role=Role.VIEWER)
    clients = {Role.VIEWER: pki.stranger, Role.OPERATOR: pki.bot, Role.ADMIN: pki.cn_admin}
    async with service_with(settings) as service:
        for role, client in clients.items():
            async with tls_channel(pki, service.target, client) as channel:
                for path, method in all_methods():
                    code = await code_of(channel, path, method, ())
                    if role >= METHOD_ROLES[path]:
                        assert code in ADMITTED, (path, role, code)
                    else:
                        assert code == grpc.StatusCode.PERMISSION_DENIED, (path, role, code)


async def test_python_client_and_cli_with_a_token_over_tls(
    service_settings: Callable[..., Settings], pki: Pki, tmp_path: Path
) -> None:
    settings = auth_settings(service_settings, tls_cert=pki.server.cert, tls_key=pki.server.key)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.ca.cert)
    async with service_with(settings) as service:
        async with AsyncExportClient(
            service.target, ca_cert=pki.ca.cert, token=TOKENS["op-a"][1]
        ) as client:
            created = await client.create_export("in/a.mp4", [thumbnail()])
            assert created.requester == "op-a"
            assert [e.name for e in (await client.list_exports()).exports] == [created.name]
        async with AsyncExportClient(
            service.target, ca_cert=pki.ca.cert, token=TOKENS["op-b"][1]
        ) as client:
            with pytest.raises(NotFoundError):
                await client.get_export(created.name)
        async with AsyncExportClient(service.target, ca_cert=pki.ca.cert) as client:
            with pytest.raises(UnauthenticatedError):
                await client.list_exports()

        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARC_VIDEO_")}
        env.update(SPARC_VIDEO_TARGET=service.target, SPARC_VIDEO_CA_CERT=str(ca_file))
        got = await run_cli(
            "export",
            "get",
            created.name,
            "--format",
            "json",
            env={**env, "SPARC_VIDEO_TOKEN": TOKENS["op-a"][1]},
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["requester"] == "op-a"
        token_file = tmp_path / "token"
        token_file.write_text(TOKENS["admin-1"][1] + "\n")
        stats = await run_cli("queue", "stats", "--token-file", str(token_file), env=env)
        assert stats.returncode == 0, stats.stderr
        wrong = "wrong-token-0123456789"
        refused = await run_cli("queue", "stats", env={**env, "SPARC_VIDEO_TOKEN": wrong})
        assert refused.returncode == 5
        assert "UNAUTHENTICATED" in refused.stderr
        assert wrong not in refused.stderr + refused.stdout


async def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # An asyncio subprocess, so the server in this event loop keeps answering meanwhile.
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "sparc-video"),
        *args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


# ---------------------------------------------------------------------------------------------
# Secrets and settings


@pytest.fixture(scope="module")
def auth_spans() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    assert setup_tracing("sparc-video-tests", env={}, exporters=[memory]) is not None
    return memory


async def test_tokens_and_jwt_secrets_are_never_returned_logged_stored_or_traced(
    service_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
    auth_spans: InMemorySpanExporter,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth_spans.clear()
    valid_jwt = make_jwt("jwt-op", "operator")
    expired_jwt = make_jwt("jwt-op", "operator", expires_in=-600)
    wrong = "not-a-token-but-secret-looking-987654"
    forged = make_jwt("jwt-op", "admin", key="guessed-secret-" + "z" * 30)
    secrets = [token for _, token in TOKENS.values()]
    secrets += [JWT_SECRET, valid_jwt, expired_jwt, wrong, forged]
    settings = auth_settings(service_settings)
    seen: list[bytes] = []

    async def call(rpc: Any, request: Any, metadata: Metadata) -> None:
        try:
            response = await rpc(request, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            seen.append((exc.details() or "").encode())
            seen.append(status_of(exc).SerializeToString())
            return
        seen.append(response.SerializeToString())

    async with service_with(settings) as service:
        stub = service.exports
        for metadata in (
            as_static("op-a"),
            as_static("viewer-1"),
            bearer(valid_jwt),
            bearer(expired_jwt),
            bearer(wrong),
            bearer(forged),
            (("authorization", wrong),),
        ):
            await call(stub.CreateExport, create_request("rid"), metadata)
            await call(stub.ListExports, export_service_pb2.ListExportsRequest(), metadata)
            await call(stub.GetQueueStats, export_service_pb2.GetQueueStatsRequest(), metadata)
        seen += await redis_contents(service.app.redis, settings.redis_prefix)
    assert len(seen) > 20
    assert_in_none(secrets, seen)
    logged = logged_text(caplog)
    traced = "\n".join(
        f"{span.attributes!r} {span.status.description!r} "
        + " ".join(f"{event.name} {event.attributes!r}" for event in span.events)
        for span in auth_spans.get_finished_spans()
    )
    assert "UNAUTHENTICATED" in traced
    # The caller is on its RPC's span and log lines.
    users = {
        (span.name, (span.attributes or {}).get("enduser.id"))
        for span in auth_spans.get_finished_spans()
    }
    assert ("sparc.video.v1.ExportService/CreateExport", "op-a") in users
    assert ("sparc.video.v1.ExportService/ListExports", "jwt-op") in users
    for secret in secrets:
        assert secret not in logged
        assert secret not in traced
    # Should anything print them anyway, the log redactor replaces them.
    redact = Redactor(settings_secrets(settings))
    line = f"authorization: Bearer {valid_jwt} token={TOKENS['op-a'][1]} key={JWT_SECRET}"
    assert all(secret not in redact(line) for secret in secrets)
    assert "Bearer REDACTED" in redact(line)
    for secret in secrets:
        assert secret not in repr(settings)


def test_auth_settings_from_the_environment(tmp_path: Path, pki: Pki) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(
        "# principal:role:token\n"
        "ci-bot:operator:ci-token-0123456789abcdef\n"
        "ops:ADMIN:ops:token:with:colons-0123456789\n"
    )
    (tmp_path / "cert.pem").write_bytes(pki.server.cert)
    (tmp_path / "key.pem").write_bytes(pki.server.key)
    (tmp_path / "ca.pem").write_bytes(pki.ca.cert)
    settings = Settings.from_env(
        {
            "AUTH_TOKENS_FILE": str(token_file),
            "AUTH_JWT_SECRET": JWT_SECRET,
            "AUTH_JWT_ISSUER": ISSUER,
            "AUTH_JWT_AUDIENCE": AUDIENCE,
            "GRPC_TLS_CERT_FILE": str(tmp_path / "cert.pem"),
            "GRPC_TLS_KEY_FILE": str(tmp_path / "key.pem"),
            "GRPC_TLS_CLIENT_CA_FILE": str(tmp_path / "ca.pem"),
            "GRPC_TLS_REQUIRE_CLIENT_CERT": "false",
            "AUTH_MTLS_ROLES": "spiffe://sparc/ns/a=operator, b.example=viewer",
            "AUTH_MTLS_DEFAULT_ROLE": "viewer",
            "GRPC_REFLECTION": "authenticated",
            "QUOTA_MAX_QUEUED_EXPORTS": "7",
            "QUOTA_REQUESTS_PER_MINUTE": "0",
        }
    )
    assert settings.auth_static_tokens == (
        StaticToken("ci-bot", Role.OPERATOR, "ci-token-0123456789abcdef"),
        StaticToken("ops", Role.ADMIN, "ops:token:with:colons-0123456789"),
    )
    assert settings.auth_mtls_roles == (
        ("spiffe://sparc/ns/a", Role.OPERATOR),
        ("b.example", Role.VIEWER),
    )
    assert settings.auth_mtls_default_role == Role.VIEWER
    assert settings.tls_key == pki.server.key and not settings.tls_require_client_cert
    assert (settings.quota_max_queued_exports, settings.quota_requests_per_minute) == (7, 0)
    assert settings.auth_configured and not settings.auth_disabled
    assert not Settings.from_env({}).auth_configured
    assert Settings.from_env({"AUTH_DISABLED": "true"}).auth_disabled
    for secret in ("ci-token-0123456789abcdef", JWT_SECRET, "PRIVATE KEY"):
        assert secret not in repr(settings)

    bad = {
        "AUTH_TOKENS": "a:viewer:short-secret, b:root:long-enough-secret-123456",
        "AUTH_JWT_SECRET": "too-short-secret",
        "GRPC_TLS_CERT_FILE": str(tmp_path / "cert.pem"),
        "GRPC_REFLECTION": "maybe",
        "AUTH_MTLS_DEFAULT_ROLE": "root",
    }
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(bad)
    message = str(raised.value)
    for expected in (
        "AUTH_TOKENS: entry 1: the token is shorter than 16 characters",
        "AUTH_JWT_ISSUER must be set",
        "AUTH_JWT_AUDIENCE must be set",
        "AUTH_JWT_SECRET must be at least 32 characters",
        "GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE must be set together",
        "GRPC_REFLECTION='maybe'",
        "AUTH_MTLS_DEFAULT_ROLE: 'root' is not a role",
    ):
        assert expected in message, message
    assert "short-secret" not in message and "too-short-secret" not in message
    with pytest.raises(SettingsError, match="entry 2: 'root' is not a role"):
        Settings.from_env({"AUTH_TOKENS": "a:viewer:long-enough-secret-1,b:root:long-enough-2x"})
    with pytest.raises(SettingsError, match="entry 1 is not PRINCIPAL:ROLE:TOKEN") as raised:
        Settings.from_env({"AUTH_TOKENS": "no-separators-at-all-123"})
    assert "no-separators" not in str(raised.value)


async def test_a_token_without_tls_needs_the_plaintext_opt_in(
    service_settings: Callable[..., Settings],
) -> None:
    """The README's docker and Kubernetes examples serve tokens without TLS (a mesh encrypts):
    the client refuses to send a token in plaintext unless told to, and says how."""
    settings = service_settings(auth_disabled=False, auth_static_tokens=static_tokens())
    token = TOKENS["op-a"][1]
    with pytest.raises(ValueError, match="plaintext_token=True") as refused:
        AsyncExportClient("127.0.0.1:1", token=token)
    assert "--plaintext-token" in str(refused.value)
    async with start_service(settings, worker=False) as service:
        async with AsyncExportClient(service.target, token=token, plaintext_token=True) as client:
            await service.app.storage.put_bytes("in/x.mp4", b"x", "video/mp4")
            created = await client.create_export("in/x.mp4", [thumbnail("1")])
            # A stream carries the token too.
            async for event in client.watch_export(created.name):
                assert event.export.state == export_pb2.Export.STATE_QUEUED
                break
            assert (await client.get_export(created.name)).name == created.name
        async with AsyncExportClient(service.target, token="wrong", plaintext_token=True) as bad:
            with pytest.raises(UnauthenticatedError):
                await bad.get_export(created.name)


def test_the_documented_roles_table_is_the_codes() -> None:
    """docs/security.md's roles table names each RPC in the row of the least role it needs."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text()
    documented: dict[str, Role] = {}
    for role in Role:
        (row,) = re.findall(rf"^\| `{role}` \|(.*)\|$", doc, re.M)
        for name in re.findall(r"`(\w+)`", row):
            documented[name] = role
    in_code = {method.rsplit("/", 1)[1]: role for method, role in METHOD_ROLES.items()}
    assert documented == in_code


async def test_the_cli_sends_a_token_in_plaintext_only_when_told(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(auth_disabled=False, auth_static_tokens=static_tokens())
    async with start_service(settings, worker=False) as service:
        env = {**client_env(), "SPARC_VIDEO_TOKEN": TOKENS["op-a"][1]}
        refused = await sparc_video("export", "list", "--target", service.target, env=env)
        assert refused.rc == 2, refused
        assert "--plaintext-token" in refused.stderr
        listed = await sparc_video(
            "export", "list", "--target", service.target, "--plaintext-token", env=env
        )
        assert listed.rc == 0, listed.stderr
        env["SPARC_VIDEO_PLAINTEXT_TOKEN"] = "1"
        by_env = await sparc_video("--target", service.target, "export", "list", env=env)
        assert by_env.rc == 0, by_env.stderr
