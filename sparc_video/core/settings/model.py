"""Every setting, declared once: its variable, type, default, description and checks.

Long because each setting (about 70) is declared here once, grouped as the
reference lists them; splitting it would scatter what an operator reads as one table.

`Settings.from_env()` reads them (`source.py`); `sparc-video --help` and docs/configuration.md
are generated from these declarations (`reference.py`), so the three cannot disagree.
`Settings(...)` alone never reads the environment: it is the defaults plus what it is given,
each value checked; `from_env` and `replace` also check the settings that must agree.
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    SecretStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sparc_video.core.roles import Role
from sparc_video.core.settings.fields import problem, setting
from sparc_video.core.settings.parsers import (
    StaticToken,
    parse_fernet_keys,
    parse_identity_roles,
    parse_static_tokens,
)
from sparc_video.core.settings.source import EnvironmentSource
from sparc_video.core.settings.types import (
    Names,
    Secret,
    Size,
    checked,
    key_prefixes,
    lowercase,
    networks,
    on_secret,
    parsed,
    postgres_url,
    starts_with,
)
from sparc_video.core.signing_keys import parse_private_key, parse_public_keys

ReflectionMode = Literal["public", "authenticated", "off"]
REFLECTION_MODES: tuple[str, ...] = typing.get_args(ReflectionMode)
DAY = 24 * 3600


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


class Settings(BaseSettings):
    """Everything configurable, with the defaults of a single-machine install."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    # --- Network
    grpc_host: str = setting("[::]", "GRPC_HOST", "Network", "Address the gRPC API listens on")
    grpc_port: int = setting(50051, "GRPC_PORT", "Network", "Port of the gRPC API", ge=0, le=65535)
    http_host: str = setting(
        "0.0.0.0", "HTTP_HOST", "Network", "Address of the HTTP port (/metrics, /health, downloads)"
    )
    http_port: int = setting(
        8080, "HTTP_PORT", "Network", "Port of /metrics, /health and downloads", ge=0, le=65535
    )
    public_http_url: str = setting(
        "",
        "PUBLIC_HTTP_URL",
        "Network",
        "Base of the links the local storage backend hands out",
        shown="http://127.0.0.1:HTTP_PORT",
    )
    grpc_max_message_bytes: Size = setting(
        4 * 1024**2,
        "GRPC_MAX_MESSAGE_SIZE",
        "Network",
        "Largest gRPC message either way",
        ge=64 * 1024,
        le=1024**3,
        kind="size",
    )
    grpc_reflection: Annotated[ReflectionMode, BeforeValidator(lowercase)] = setting(
        "public",
        "GRPC_REFLECTION",
        "Network",
        "gRPC server reflection: public, authenticated (any valid principal) or off",
        kind="public|authenticated|off",
    )

    # --- Redis
    redis_url: Annotated[str, checked(starts_with("redis://", "rediss://", "unix://"))] = setting(
        "redis://127.0.0.1:6379/0", "REDIS_URL", "Redis", "Redis of the queue, records and events"
    )
    redis_prefix: str = setting(
        "sparc-video",
        "REDIS_PREFIX",
        "Redis",
        "Prefix of every Redis key the service and its workers own, so deployments or test "
        "runs can share one Redis",
    )

    # --- PostgreSQL
    database_url: Annotated[Secret, checked(on_secret(postgres_url))] = setting(
        None,
        "DATABASE_URL",
        "PostgreSQL",
        "postgresql://user:password@host:5432/db, the system of record (`sparc-video migrate` "
        "upgrades its schema)",
        shown="`dev`: an embedded one under its data directory",
        file=True,
    )
    database_pool_max_size: int = setting(
        10,
        "DATABASE_POOL_MAX_SIZE",
        "PostgreSQL",
        "Most connections the PostgreSQL pool of one process opens (each server replica and "
        "each worker has one; a server also opens one for its health check): keep the sum "
        "over all processes under PostgreSQL's max_connections",
        ge=1,
        le=1000,
    )
    database_slow_query_s: float = setting(
        0.2,
        "DATABASE_SLOW_QUERY",
        "PostgreSQL",
        "Seconds after which a statement is logged (WARNING, its text without parameters) and "
        "counted in database_slow_queries_total",
        ge=0.0,
        le=3600.0,
    )

    # --- Storage
    s3_bucket: str | None = setting(
        None, "S3_BUCKET", "Storage", "Use S3 storage in this bucket", shown="local storage"
    )
    s3_endpoint_url: Annotated[str | None, checked(starts_with("http://", "https://"))] = setting(
        None, "S3_ENDPOINT_URL", "Storage", "S3 API endpoint, e.g. MinIO", shown="AWS"
    )
    aws_region: str = setting("us-east-1", "AWS_REGION", "Storage", "Region of the S3 bucket")
    aws_access_key_id: Secret = setting(
        None, "AWS_ACCESS_KEY_ID", "Storage", "S3 access key", shown="boto3's chain", file=True
    )
    aws_secret_access_key: Secret = setting(
        None,
        "AWS_SECRET_ACCESS_KEY",
        "Storage",
        "S3 secret key",
        shown="boto3's chain",
        file=True,
    )
    cloudfront_domain: str | None = setting(
        None, "CLOUDFRONT_DOMAIN", "Storage", "Hand out download URLs on this CloudFront domain"
    )
    cloudfront_key_pair_id: str | None = setting(
        None,
        "CLOUDFRONT_KEY_PAIR_ID",
        "Storage",
        "With CLOUDFRONT_PRIVATE_KEY, CloudFront URLs are signed (they expire like S3's)",
    )
    cloudfront_private_key: Secret = setting(
        None,
        "CLOUDFRONT_PRIVATE_KEY",
        "Storage",
        "PEM of the RSA key CloudFront trusts",
        file=True,
        strip=False,
    )
    local_storage_dir: Path = setting(
        Path("./var/storage"),
        "LOCAL_STORAGE_DIR",
        "Storage",
        "Root of the local storage backend, used when no S3 bucket is configured",
        shown="./var/storage",
    )
    local_signing_key: Secret = setting(
        None,
        "LOCAL_STORAGE_SIGNING_KEY",
        "Storage",
        "HMAC key of local-storage download links",
        shown="a key file in LOCAL_STORAGE_DIR",
        file=True,
    )
    manifest_retired_keys: Annotated[str | None, checked(parse_public_keys)] = setting(
        None,
        "MANIFEST_RETIRED_KEYS",
        "Cameras and evidence",
        "Public keys of signing keys rotated out (PEM blocks, or base64 keys separated by "
        "commas): they sign nothing new, but GetManifestSigningKey still lists them so "
        "bundles signed before the rotation verify",
        file=True,
    )
    download_url_ttl_s: int = setting(
        15 * 60,
        "DOWNLOAD_URL_TTL",
        "Storage",
        "Default lifetime of download URLs, seconds",
        ge=1,
        le=7 * DAY,
    )
    download_url_max_ttl_s: int = setting(
        DAY,
        "DOWNLOAD_URL_MAX_TTL",
        "Storage",
        "Longest lifetime a client may ask for (download and upload links), seconds",
        ge=1,
        le=7 * DAY,
    )
    source_key_prefixes: Annotated[Names, checked(key_prefixes)] = setting(
        (),
        "SOURCE_KEY_PREFIXES",
        "Storage",
        "Key prefixes sources, watermark images and recordings may come from, comma-separated",
        kind="list",
        shown="any key outside the service's own outputs",
    )

    # --- Cameras and evidence
    camera_credentials_key: Annotated[Secret, checked(on_secret(parse_fernet_keys))] = setting(
        None,
        "CAMERA_CREDENTIALS_KEY",
        "Cameras and evidence",
        "Fernet key(s) encrypting camera credentials at rest, comma-separated; the first encrypts",
        shown="a key file in LOCAL_STORAGE_DIR",
        file=True,
    )
    camera_allowed_networks: Annotated[Names, checked(networks)] = setting(
        (),
        "CAMERA_ALLOWED_NETWORKS",
        "Cameras and evidence",
        "CIDRs camera streams may use although the address policy refuses them (loopback, "
        "link-local, cloud metadata, the service's own Redis/S3), comma-separated",
        kind="list",
        shown="none",
    )
    manifest_signing_key: Annotated[Secret, checked(on_secret(parse_private_key))] = setting(
        None,
        "MANIFEST_SIGNING_KEY",
        "Cameras and evidence",
        "Ed25519 private key signing export manifests: PEM, or its 32-byte seed in base64",
        shown="a key file in LOCAL_STORAGE_DIR",
        file=True,
    )

    # --- Workers
    worker_concurrency: int = setting(
        2,
        "VIDEO_WORKER_CONCURRENCY",
        "Workers",
        "Jobs one worker runs at once; each job's media threads get the worker's cores (CPU "
        "affinity, cgroup CPU quota) divided by it",
        ge=1,
        le=256,
    )
    temp_dir: Path = setting(
        Path("/tmp/sparc-video"), "VIDEO_TEMP_DIR", "Workers", "Worker scratch space"
    )
    temp_min_free_bytes: Size = setting(
        1024**3,
        "VIDEO_TEMP_MIN_FREE",
        "Workers",
        "Below this much free space in VIDEO_TEMP_DIR the health report flags it",
        kind="size",
    )
    processing_timeout_ms: int = setting(
        30 * 60 * 1000,
        "VIDEO_PROCESSING_TIMEOUT",
        "Workers",
        "Limit of one attempt, milliseconds",
        ge=1000,
        le=7 * DAY * 1000,
    )
    job_max_tries: int = setting(
        3, "VIDEO_JOB_MAX_TRIES", "Workers", "Attempts for transient failures", ge=1, le=100
    )
    retry_initial_delay_s: float = setting(
        5.0,
        "VIDEO_RETRY_INITIAL_DELAY",
        "Workers",
        "Seconds before the first retry",
        ge=0.0,
        le=3600.0,
    )
    retry_multiplier: float = setting(
        2.0, "VIDEO_RETRY_MULTIPLIER", "Workers", "Factor of each next retry delay", ge=1, le=10
    )
    retry_timeouts: bool = setting(
        False,
        "VIDEO_RETRY_TIMEOUTS",
        "Workers",
        "Retry an attempt stopped by VIDEO_PROCESSING_TIMEOUT like a transient error",
    )
    lease_ttl_s: float = setting(
        15.0,
        "VIDEO_LEASE_TTL",
        "Workers",
        "Seconds a running attempt may go without renewing its lease before its export is "
        "handed to another worker",
        ge=1.0,
        le=3600.0,
    )
    reconcile_interval_s: float = setting(
        10.0,
        "VIDEO_RECONCILE_INTERVAL",
        "Workers",
        "Seconds between checks for lost jobs and stale scratch",
        ge=0.1,
        le=3600.0,
    )
    worker_shutdown_grace_s: int = setting(
        25,
        "WORKER_SHUTDOWN_GRACE",
        "Workers",
        "Seconds a stopping worker (SIGTERM) lets running jobs finish before handing them "
        "back; Kubernetes' terminationGracePeriodSeconds minus a margin",
        ge=0,
        le=3600,
    )
    processing_memory_limit: Size = setting(
        4 * 1024**3,
        "VIDEO_PROCESSING_MEMORY_LIMIT",
        "Workers",
        "Address-space cap of the media child process; 0 disables",
        kind="size",
    )
    processing_file_size_limit: Size = setting(
        20 * 1000**3,
        "VIDEO_PROCESSING_FILE_SIZE_LIMIT",
        "Workers",
        "Largest file the media child process may write; 0 disables",
        kind="size",
    )
    worker_metrics_port: int = setting(
        9091,
        "WORKER_METRICS_PORT",
        "Workers",
        "Port of each worker process's /metrics; 0 runs none",
        ge=0,
        le=65535,
    )

    # --- Recorder (`sparc-video recorder`, continuous recording: sparc_video/recording)
    recorder_buffer_dir: Path = setting(
        Path("./var/recorder-buffer"),
        "RECORDER_BUFFER_DIR",
        "Recorder",
        "Local disk where segments wait until storage has them; left-over files are uploaded "
        "when a recorder starts",
        shown="./var/recorder-buffer",
    )
    recorder_buffer_max: Size = setting(
        2 * 1024**3,
        "RECORDER_BUFFER_MAX",
        "Recorder",
        "Most bytes of segments waiting in RECORDER_BUFFER_DIR; past it new segments are "
        "dropped and recorded as a storage_unavailable gap",
        ge=64 * 1024,
        kind="size",
    )
    recording_retention_days: int = setting(
        30,
        "RECORDING_RETENTION_DAYS",
        "Recorder",
        "Days a recorded segment is kept when its camera's policy names no retention",
        ge=1,
        le=36500,
    )
    recorder_lease_ttl_s: float = setting(
        6.0,
        "RECORDER_LEASE_TTL",
        "Recorder",
        "Seconds a recorder's camera leases and membership outlive its last renewal (renewed "
        "every third of it): a dead recorder's cameras are taken within this plus "
        "RECORDER_POLL_INTERVAL",
        ge=0.5,
        le=300.0,
    )
    recorder_poll_interval_s: float = setting(
        1.0,
        "RECORDER_POLL_INTERVAL",
        "Recorder",
        "Seconds between a recorder's reads of the policies, its peers and free cameras",
        ge=0.05,
        le=60.0,
    )
    live_linger_s: float = setting(
        10.0,
        "LIVE_LINGER",
        "Recorder",
        "Seconds a camera whose recording is OFF, opened on demand for live view, stays open "
        "after its last viewer left (a viewer back within it finds it still open)",
        ge=0.0,
        le=3600.0,
    )
    recorder_metrics_port: int = setting(
        9092,
        "RECORDER_METRICS_PORT",
        "Recorder",
        "Port of `sparc-video recorder`'s /metrics (on HTTP_HOST); 0 runs none (under `dev` "
        "the server's /metrics has them)",
        ge=0,
        le=65535,
    )
    recorder_live_grpc_port: int = setting(
        0,
        "RECORDER_LIVE_GRPC_PORT",
        "Recorder",
        "Port of `sparc-video recorder`'s live-view gRPC server (StreamCameraLive for the "
        "cameras it holds, on GRPC_HOST, with the API's TLS and authentication); 0 runs none "
        "(under `dev` the API serves live view)",
        ge=0,
        le=65535,
    )
    recorder_live_http_port: int = setting(
        0,
        "RECORDER_LIVE_HTTP_PORT",
        "Recorder",
        "Port of `sparc-video recorder`'s live-view HTTP server (the browser page, its "
        "WebSocket and LL-HLS, on HTTP_HOST); 0 runs none",
        ge=0,
        le=65535,
    )
    recorder_advertise_address: str = setting(
        "",
        "RECORDER_ADVERTISE_ADDRESS",
        "Recorder",
        "Host name viewers reach this recorder's live ports at (in Kubernetes the pod's name "
        "under its headless service); GetCameraLiveStream points grpc_target and the links there",
        shown="this host's name",
    )
    live_link_key: Secret = setting(
        None,
        "LIVE_LINK_KEY",
        "Recorder",
        "HMAC key of live-view links (32 characters or more): the API signs them, the recorder "
        "holding the camera checks them, so every API and recorder process needs the same one",
        shown="a key file in LOCAL_STORAGE_DIR",
        file=True,
    )
    recorder_retention_interval_s: float = setting(
        600.0,
        "RECORDER_RETENTION_INTERVAL",
        "Recorder",
        "Seconds between the retention sweeps of recorded segments",
        ge=0.1,
        le=DAY,
    )

    # --- Limits
    max_upload_size: Size = setting(
        5 * 1000**3,
        "MAX_VIDEO_UPLOAD_SIZE",
        "Limits",
        "Largest source accepted",
        kind="size",
    )
    max_export_range_s: int = setting(
        DAY,
        "MAX_EXPORT_RANGE",
        "Limits",
        "Longest camera time range one export may cover, seconds",
        ge=1,
        le=365 * DAY,
    )
    max_frame_pixels: int = setting(
        8192 * 8192,
        "MAX_FRAME_PIXELS",
        "Limits",
        "Largest source picture, width x height",
        ge=64 * 64,
        le=8192 * 8192,
    )
    max_source_duration_s: float = setting(
        float(DAY),
        "MAX_SOURCE_DURATION",
        "Limits",
        "Longest source, seconds; 0 = no limit",
        ge=0.0,
        le=7.0 * DAY,
    )
    max_export_operations: int = setting(
        16, "MAX_EXPORT_OPERATIONS", "Limits", "Operations per export", ge=1, le=16
    )
    max_export_thumbnails: int = setting(
        100,
        "MAX_EXPORT_THUMBNAILS",
        "Limits",
        "Images (thumbnails, sprite tiles) per export",
        ge=1,
        le=10_000,
    )
    quota_max_queued_exports: int = setting(
        100,
        "QUOTA_MAX_QUEUED_EXPORTS",
        "Limits",
        "Unfinished exports one principal may have, shared by every replica; 0 = no limit",
        ge=0,
        le=10_000_000,
    )
    quota_requests_per_minute: int = setting(
        600,
        "QUOTA_REQUESTS_PER_MINUTE",
        "Limits",
        "RPCs one principal may start a minute; 0 = no limit",
        ge=0,
        le=10_000_000,
    )

    # --- Retention
    failed_exports_kept: int = setting(
        500,
        "FAILED_EXPORTS_KEPT",
        "Retention",
        "Failed exports kept for inspection",
        ge=0,
        le=10_000_000,
    )
    export_retention_s: int = setting(
        30 * DAY,
        "EXPORT_RETENTION",
        "Retention",
        "Seconds finished exports (records, events, outputs) are kept; 0 = forever",
        ge=0,
        le=10 * 365 * DAY,
    )
    upload_retention_s: int = setting(
        DAY,
        "UPLOAD_RETENTION",
        "Retention",
        "Seconds after its creation an upload (UploadService) that no export used is removed, "
        "and an unfinished one aborted",
        ge=1,
        le=365 * DAY,
    )
    event_retention_s: int = setting(
        DAY,
        "EVENT_RETENTION",
        "Retention",
        "Seconds the progress streams of finished exports are kept for late watchers",
        ge=60,
        le=365 * DAY,
    )

    # --- Observability
    health_check_interval_s: float = setting(
        5.0,
        "HEALTH_CHECK_INTERVAL",
        "Observability",
        "Seconds between background health checks (Redis, storage, media, workers, temp space)",
        ge=0.05,
        le=3600.0,
    )
    log_format: Annotated[Literal["text", "json"], BeforeValidator(lowercase)] = setting(
        "text",
        "LOG_FORMAT",
        "Observability",
        "text (for people) or json (one object a line, for log collectors)",
        kind="text|json",
    )

    # --- Authentication (`security/auth.py`). Without static tokens, a JWT key or a client CA,
    # `serve` refuses to start unless auth_disabled is set explicitly.
    auth_disabled: bool = setting(
        False,
        "AUTH_DISABLED",
        "Authentication",
        "No authentication: every caller is a local admin (development only; `serve` refuses "
        "to start with no authentication configured otherwise)",
    )
    auth_static_tokens: Annotated[tuple[StaticToken, ...], parsed(parse_static_tokens)] = setting(
        (),
        "AUTH_TOKENS",
        "Authentication",
        "Static service tokens PRINCIPAL:ROLE:TOKEN, comma- or line-separated",
        kind="secret",
        shown="none",
        file=True,
        repr=False,
    )
    auth_jwt_secret: Secret = setting(
        None,
        "AUTH_JWT_SECRET",
        "Authentication",
        "HS256 key (32 characters or more) of bearer JWTs",
        file=True,
    )
    auth_jwt_public_key: Secret = setting(
        None,
        "AUTH_JWT_PUBLIC_KEY",
        "Authentication",
        "PEM public key of bearer JWTs (RS256, ES256 or EdDSA by its type); instead of "
        "AUTH_JWT_SECRET",
        file=True,
    )
    auth_jwt_issuer: str = setting(
        "", "AUTH_JWT_ISSUER", "Authentication", "Issuer JWTs must name; required with a JWT key"
    )
    auth_jwt_audience: str = setting(
        "",
        "AUTH_JWT_AUDIENCE",
        "Authentication",
        "Audience JWTs must name; required with a JWT key",
    )
    auth_jwt_role_claim: str = setting(
        "role",
        "AUTH_JWT_ROLE_CLAIM",
        "Authentication",
        "Claim holding the role (a string, or a list whose highest known role counts)",
    )
    auth_jwt_leeway_s: int = setting(
        30,
        "AUTH_JWT_LEEWAY",
        "Authentication",
        "Clock skew tolerated on exp/nbf/iat, seconds",
        ge=0,
        le=3600,
    )
    auth_mtls_roles: Annotated[tuple[tuple[str, Role], ...], parsed(parse_identity_roles)] = (
        setting(
            (),
            "AUTH_MTLS_ROLES",
            "Authentication",
            "Client-certificate identity (SAN, else CN) to role: id=role,id2=role",
            kind="list",
            shown="none",
        )
    )
    auth_mtls_default_role: Annotated[Role | None, parsed(Role.parse)] = setting(
        None,
        "AUTH_MTLS_DEFAULT_ROLE",
        "Authentication",
        "Role of other client certificates",
        kind="viewer|operator|admin",
        shown="none: refused",
    )

    # --- TLS
    tls_cert: bytes = setting(
        b"",
        "GRPC_TLS_CERT_FILE",
        "TLS",
        "PEM server certificate chain: the gRPC port serves TLS with GRPC_TLS_KEY_FILE",
        kind="path",
        shown="none",
        read=True,
    )
    tls_key: bytes = setting(
        b"",
        "GRPC_TLS_KEY_FILE",
        "TLS",
        "PEM private key of the server certificate",
        kind="path",
        shown="none",
        read=True,
        repr=False,
    )
    tls_client_ca: bytes = setting(
        b"",
        "GRPC_TLS_CLIENT_CA_FILE",
        "TLS",
        "Mutual TLS: PEM CA bundle client certificates must chain to",
        kind="path",
        shown="none",
        read=True,
    )
    tls_require_client_cert: bool = setting(
        True,
        "GRPC_TLS_REQUIRE_CLIENT_CERT",
        "TLS",
        "With a client CA, refuse handshakes without a client certificate; false lets "
        "certificate-less clients present a bearer token instead",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the constructor is given: `from_env` reads the environment explicitly.
        return (init_settings,)

    @property
    def auth_configured(self) -> bool:
        """Whether any way for a caller to prove who it is is configured."""
        return bool(
            self.auth_static_tokens
            or self.auth_jwt_secret
            or self.auth_jwt_public_key
            or self.tls_client_ca
        )

    @property
    def storage_backend(self) -> str:
        return "s3" if self.s3_bucket else "local"

    @property
    def http_base_url(self) -> str:
        return self.public_http_url.rstrip("/") or f"http://127.0.0.1:{self.http_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise SettingsError listing all problems."""
        source = EnvironmentSource(cls, os.environ if env is None else env)
        values = source()
        problems = list(source.problems)
        valid = dict(Settings())
        for name, value in values.items():
            try:
                valid[name] = _adapter(name).validate_python(value)
            except ValidationError as exc:
                field = cls.model_fields[name]
                problems += [problem(field, item) for item in exc.errors()]
        problems += relation_problems(valid)
        if problems:
            raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems))
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (by attribute name), validated as `from_env` validates: each
        value, and, when a change touches them, the settings that must agree with each other.

        (`Settings(...)` checks each value only, so a test may build a partial configuration.)
        """
        try:
            settings = type(self).model_validate({**dict(self), **changes})
        except ValidationError as exc:
            problems = describe(exc)
        else:
            before = set(relation_problems(dict(self)))
            problems = [p for p in relation_problems(dict(settings)) if p not in before]
            if not problems:
                return settings
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems))


def relation_problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong between settings that are each valid alone."""
    problems: list[str] = []
    jwt_secret, jwt_public_key = values["auth_jwt_secret"], values["auth_jwt_public_key"]
    if jwt_secret and jwt_public_key:
        problems.append("AUTH_JWT_SECRET and AUTH_JWT_PUBLIC_KEY are both set; set one")
    if jwt_secret or jwt_public_key:
        for name, attr in (
            ("AUTH_JWT_ISSUER", "auth_jwt_issuer"),
            ("AUTH_JWT_AUDIENCE", "auth_jwt_audience"),
        ):
            if not values[attr]:
                problems.append(f"{name} must be set with a JWT key: tokens are checked against it")
    if isinstance(jwt_secret, SecretStr) and len(jwt_secret.get_secret_value()) < 32:
        problems.append("AUTH_JWT_SECRET must be at least 32 characters (HS256 key)")
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        problems.append("GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE must be set together")
    if values["tls_client_ca"] and not values["tls_cert"]:
        problems.append("GRPC_TLS_CLIENT_CA_FILE needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE")
    ttl, cap = values["download_url_ttl_s"], values["download_url_max_ttl_s"]
    if ttl > cap:
        problems.append(f"DOWNLOAD_URL_TTL={ttl} is above DOWNLOAD_URL_MAX_TTL={cap}")
    return problems


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    """Validates one field alone, so every bad variable is reported at once."""
    field = Settings.model_fields[name]
    form: Any = field.annotation
    if field.metadata:
        form = Annotated[(form, *field.metadata)]
    return TypeAdapter(form)


def describe(error: ValidationError) -> list[str]:
    """One line per problem, naming the variable; a secret's value is never quoted."""
    lines: list[str] = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else None
        field = Settings.model_fields.get(name) if name else None
        if field is None:
            lines.append(str(item.get("ctx", {}).get("error", item["msg"])))
        else:
            lines.append(problem(field, item))
    return lines
