"""Authentication, authorization, ownership and per-principal quotas, against the real server.

Every RPC of ExportService and CameraService is called without credentials, with bad ones and as
each role (static tokens, HS256/RS256/ES256/EdDSA JWTs); exports are private to their
requester; quotas are shared through Redis by every replica. Client certificates, secrets and
the TLS rules are in test_auth_tls.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from google.protobuf import message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sparc.video.v1 import (
    export_pb2,
    export_service_pb2,
)

from sparc_video.api.auth_interceptor import AuthInterceptor
from sparc_video.api.server import Server
from sparc_video.api.status import ErrorInterceptor
from sparc_video.app import open_app
from sparc_video.client import (
    ResourceExhaustedError,
    error_from_rpc,
)
from sparc_video.core.settings import Settings
from sparc_video.security.auth import Authenticator, AuthNotConfigured
from sparc_video.security.roles import METHOD_ROLES, Role
from tests.auth_helpers import (
    ADMITTED,
    AUDIENCE,
    ISSUER,
    Metadata,
    all_methods,
    as_static,
    auth_settings,
    bearer,
    code_of,
    create_request,
    detail,
    make_jwt,
    service_with,
)
from tests.camera_helpers import expect_error as expect
from tests.fixtures.service import settings_env

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
