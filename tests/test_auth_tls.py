"""Authentication over (mutual) TLS and the handling of secrets, against the real server.

Client certificates name the principal and every RPC is checked over mTLS as each role; the
Python client and CLI send tokens over TLS, and in plaintext only when told; tokens and JWT
secrets are never returned, logged, stored or traced; the auth settings from the environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sparc.video.v1 import (
    export_pb2,
    export_service_pb2,
)
from sparc.video.v1 import export_service_pb2_grpc as export_grpc

from sparc_video.client import (
    AsyncExportClient,
    NotFoundError,
    UnauthenticatedError,
    thumbnail,
)
from sparc_video.core.settings import Settings, SettingsError, StaticToken
from sparc_video.observability.logs import Redactor, settings_secrets
from sparc_video.observability.tracing import setup_tracing
from sparc_video.security.roles import METHOD_ROLES, Role
from tests.auth_helpers import (
    ADMITTED,
    AUDIENCE,
    ISSUER,
    JWT_SECRET,
    TOKENS,
    Metadata,
    all_methods,
    as_static,
    auth_settings,
    bearer,
    code_of,
    create_request,
    make_jwt,
    service_with,
    static_tokens,
)
from tests.camera_helpers import expect_error as expect
from tests.camera_helpers import status_of
from tests.fixtures.service import start_service
from tests.pki import CertificateAuthority, Issued
from tests.secret_checks import assert_in_none, logged_text, redis_contents
from tests.test_cli import client_env, sparc_video

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
