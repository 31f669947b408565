"""One typed settings object, read once from the environment at start.

Every component receives the `Settings` it needs; nothing reads `os.environ` after start-up.
Bad values raise `SettingsError` naming the variable and what it accepts.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sparc_video.security.roles import Role

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


def parse_size(text: str) -> int:
    """`5GB` → 5_000_000_000, `512MiB` → 536_870_912, `1024` → 1024 bytes."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size; use a number of bytes or e.g. 500MB, 5GB, 2GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_fernet_keys(text: str) -> list[bytes]:
    """Comma-separated Fernet keys (32 bytes in URL-safe base64 each); ValueError otherwise."""
    keys = [part.strip().encode("ascii", "replace") for part in text.split(",") if part.strip()]
    if not keys:
        raise ValueError("holds no key")
    for index, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                f"key {index} is not 32 bytes in URL-safe base64; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            )
    return keys


@dataclass(frozen=True)
class StaticToken:
    """A service token from AUTH_TOKENS: whoever presents `token` is `principal` with `role`."""

    principal: str
    role: Role
    token: str = field(repr=False)


MIN_TOKEN_LENGTH = 16
REFLECTION_MODES = ("public", "authenticated", "off")


def parse_static_tokens(text: str) -> tuple[StaticToken, ...]:
    """`PRINCIPAL:ROLE:TOKEN` entries, one a line or comma-separated; `#` starts a comment line.

    Errors name the entry by number, never by content: an entry holds a secret.
    """
    entries: list[StaticToken] = []
    seen: set[str] = set()
    lines = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    parts = [part.strip() for line in lines for part in line.split(",") if part.strip()]
    for index, part in enumerate(parts, start=1):
        principal, _, rest = part.partition(":")
        role_name, _, token = rest.partition(":")
        if not principal or not token:
            raise ValueError(f"entry {index} is not PRINCIPAL:ROLE:TOKEN")
        try:
            role = Role.parse(role_name)
        except ValueError as exc:
            raise ValueError(f"entry {index}: {exc}") from None
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"entry {index}: the token is shorter than {MIN_TOKEN_LENGTH} characters; make "
                "one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if token in seen:
            raise ValueError(f"entry {index}: the same token is given twice")
        seen.add(token)
        entries.append(StaticToken(principal, role, token))
    return tuple(entries)


def parse_identity_roles(text: str) -> tuple[tuple[str, Role], ...]:
    """`IDENTITY=ROLE` pairs, comma-separated (client-certificate identity → role)."""
    pairs: list[tuple[str, Role]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        identity, sep, role_name = part.rpartition("=")
        if not sep or not identity.strip():
            raise ValueError(f"{part!r} is not IDENTITY=ROLE")
        pairs.append((identity.strip(), Role.parse(role_name)))
    return tuple(pairs)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults of a single-machine install."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key the service and its workers own (records, streams, arq queue),
    # so several deployments or test runs can share one Redis.
    redis_prefix: str = "sparc-video"
    grpc_host: str = "[::]"
    grpc_port: int = 50051
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    # Base of the links the local storage backend hands out; default http://127.0.0.1:HTTP_PORT.
    public_http_url: str = ""

    aws_region: str = "us-east-1"
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    cloudfront_domain: str | None = None
    cloudfront_key_pair_id: str | None = None
    # PEM of the RSA key CloudFront trusts; with the key pair id, CloudFront URLs are signed.
    cloudfront_private_key: str | None = field(default=None, repr=False)
    # Root of the local storage backend, used when no S3 bucket is configured.
    local_storage_dir: Path = Path("./var/storage")
    # HMAC key for local-storage download links; default: a key file kept in the storage root.
    local_signing_key: str | None = field(default=None, repr=False)
    # Fernet key(s), comma-separated, encrypting camera credentials at rest (the first one
    # encrypts); default: a key file kept in the local storage root.
    camera_credentials_key: str | None = field(default=None, repr=False)
    # Ed25519 private key signing export manifests: PEM, or its 32-byte seed in base64;
    # default: a key file kept in the local storage root.
    manifest_signing_key: str | None = field(default=None, repr=False)

    worker_concurrency: int = 2
    temp_dir: Path = Path("/tmp/sparc-video")
    max_upload_size: int = 5 * 1000**3
    # Longest camera time range one export may cover (the worker joins it into one video).
    max_export_range_s: int = 24 * 3600
    processing_timeout_ms: int = 30 * 60 * 1000
    job_max_tries: int = 3
    retry_initial_delay_s: float = 5.0
    retry_multiplier: float = 2.0
    # Whether an attempt stopped by VIDEO_PROCESSING_TIMEOUT is retried like a transient error.
    retry_timeouts: bool = False
    # A running attempt renews its lease; a worker silent for this long is taken as lost and
    # its export handed to another worker.
    lease_ttl_s: float = 15.0
    reconcile_interval_s: float = 10.0
    # How long a worker told to stop (SIGTERM) lets running jobs finish before handing them
    # back; match the Kubernetes terminationGracePeriodSeconds minus a margin.
    worker_shutdown_grace_s: int = 25
    # Address-space cap of the media child process; 0 disables.
    processing_memory_limit: int = 4 * 1024**3
    # Largest file the media child may write (caps temp-disk use per output); 0 disables.
    processing_file_size_limit: int = 20 * 1000**3
    failed_exports_kept: int = 500
    # Finished exports (records, events and outputs) are deleted after this; 0 keeps them.
    export_retention_s: int = 30 * 24 * 3600
    download_url_ttl_s: int = 15 * 60
    # Longest lifetime a client may ask for (download and upload links); longer is refused.
    download_url_max_ttl_s: int = 24 * 3600
    # Uploads (UploadService) not completed, or completed but used by no export, are removed
    # this long after they were created.
    upload_retention_s: int = 24 * 3600
    # Key prefixes sources, watermark images and recordings may come from; empty: any key
    # outside the service's own outputs (see sparc_video.security.confinement).
    source_key_prefixes: tuple[str, ...] = ()
    # Networks camera streams may be on even though the address policy refuses them
    # (loopback, link-local, private cloud metadata, the service's own Redis/S3).
    camera_allowed_networks: tuple[str, ...] = ()
    # Media limits the worker checks on its probe of the source (0 disables the duration one).
    max_frame_pixels: int = 8192 * 8192
    max_source_duration_s: float = 24 * 3600.0
    # Request limits of CreateExport.
    max_export_operations: int = 16
    max_export_thumbnails: int = 100
    grpc_max_message_bytes: int = 4 * 1024 * 1024
    # How long terminal exports' progress streams are kept for late watchers.
    event_retention_s: int = 24 * 3600
    # Seconds between background health checks (Redis, storage, media, workers, temp space).
    health_check_interval_s: float = 5.0
    # Below this much free space in temp_dir the health report flags the temp-space check.
    temp_min_free_bytes: int = 1024**3
    # Port of each worker process's /metrics; 0 runs no metrics port.
    worker_metrics_port: int = 9091
    # "text" (human) or "json" (one object per line, for log collectors).
    log_format: str = "text"

    # Authentication (`security/auth.py`, README "Security"). Without any of static tokens, a JWT
    # key or a client CA, `serve` refuses to start unless auth_disabled is set explicitly.
    # Every caller is then a local admin: for development only (`sparc-video dev`).
    auth_disabled: bool = False
    auth_static_tokens: tuple[StaticToken, ...] = field(default=(), repr=False)
    # HS256 shared secret, or a PEM public key (RS256, ES256 or EdDSA by its type).
    auth_jwt_secret: str | None = field(default=None, repr=False)
    auth_jwt_public_key: str | None = None
    auth_jwt_issuer: str = ""
    auth_jwt_audience: str = ""
    # The claim holding the role (a string, or a list whose highest known role counts).
    auth_jwt_role_claim: str = "role"
    # Clock skew tolerated on exp/nbf/iat, seconds.
    auth_jwt_leeway_s: int = 30
    # Client-certificate identity (SAN, else CN) → role; others get the default role, if any.
    auth_mtls_roles: tuple[tuple[str, Role], ...] = ()
    auth_mtls_default_role: Role | None = None
    # "public", "authenticated" (any valid principal) or "off".
    grpc_reflection: str = "public"
    # PEM server certificate chain and key: the gRPC port serves TLS when set.
    tls_cert: bytes = b""
    tls_key: bytes = field(default=b"", repr=False)
    # PEM CA bundle that client certificates must chain to (mutual TLS).
    tls_client_ca: bytes = b""
    # With a client CA: refuse TLS handshakes without a client certificate. False lets
    # certificate-less clients in to present a bearer token instead.
    tls_require_client_cert: bool = True
    # Per principal, shared by every replica (Redis); 0 disables. Off while auth_disabled.
    quota_max_queued_exports: int = 100
    quota_requests_per_minute: int = 600

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
        env = os.environ if env is None else env
        problems: list[str] = []
        values: dict[str, object] = {}

        def text(name: str, attr: str) -> None:
            raw = env.get(name)
            if raw is not None and raw.strip():
                values[attr] = raw.strip()

        def integer(name: str, attr: str, low: int, high: int) -> None:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return
            try:
                number = int(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not an integer")
                return
            if not low <= number <= high:
                problems.append(f"{name}={number} must be between {low} and {high}")
                return
            values[attr] = number

        def number(name: str, attr: str, low: float, high: float) -> None:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a number")
                return
            if not low <= value <= high:
                problems.append(f"{name}={value:g} must be between {low:g} and {high:g}")
                return
            values[attr] = value

        def flag(name: str, attr: str) -> None:
            raw = env.get(name, "").strip().lower()
            if not raw:
                return
            if raw not in {"1", "true", "yes", "0", "false", "no"}:
                problems.append(f"{name}={raw!r} must be true or false")
            else:
                values[attr] = raw in {"1", "true", "yes"}

        def pem_file(name: str, attr: str) -> None:
            path = env.get(name, "").strip()
            if not path:
                return
            try:
                values[attr] = Path(path).read_bytes()
            except OSError as exc:
                problems.append(f"{name}: cannot read {path!r}: {exc.strerror}")

        def secret_value(name: str, strip: bool = True) -> str | None:
            """NAME, or NAME_FILE naming a file that holds it (a mounted secret); the file wins.
            Messages never quote the value."""
            path = env.get(f"{name}_FILE", "").strip()
            if not path:
                raw = env.get(name, "").strip()
                return raw or None
            try:
                content = Path(path).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                problems.append(f"{name}_FILE: cannot read {path!r} ({why})")
                return None
            if not content.strip():
                problems.append(f"{name}_FILE: {path!r} is empty")
                return None
            return content.strip() if strip else content

        def secret(name: str, attr: str, strip: bool = True) -> None:
            value = secret_value(name, strip)
            if value is not None:
                values[attr] = value

        def names(name: str, attr: str) -> list[str]:
            raw = env.get(name, "")
            items = [item.strip() for item in raw.split(",") if item.strip()]
            if items:
                values[attr] = tuple(items)
            return items

        def size(name: str, attr: str) -> None:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return
            try:
                values[attr] = parse_size(raw)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")

        text("REDIS_URL", "redis_url")
        text("REDIS_PREFIX", "redis_prefix")
        text("GRPC_HOST", "grpc_host")
        integer("GRPC_PORT", "grpc_port", 0, 65535)
        text("HTTP_HOST", "http_host")
        integer("HTTP_PORT", "http_port", 0, 65535)
        text("PUBLIC_HTTP_URL", "public_http_url")
        text("AWS_REGION", "aws_region")
        secret("AWS_ACCESS_KEY_ID", "aws_access_key_id")
        secret("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key")
        text("S3_BUCKET", "s3_bucket")
        text("S3_ENDPOINT_URL", "s3_endpoint_url")
        text("CLOUDFRONT_DOMAIN", "cloudfront_domain")
        text("CLOUDFRONT_KEY_PAIR_ID", "cloudfront_key_pair_id")
        # A PEM keeps its line breaks; the other secrets are single tokens.
        secret("CLOUDFRONT_PRIVATE_KEY", "cloudfront_private_key", strip=False)
        secret("LOCAL_STORAGE_SIGNING_KEY", "local_signing_key")
        secret("CAMERA_CREDENTIALS_KEY", "camera_credentials_key")
        if isinstance(values.get("camera_credentials_key"), str):
            try:
                parse_fernet_keys(str(values["camera_credentials_key"]))
            except ValueError as exc:
                problems.append(f"CAMERA_CREDENTIALS_KEY: {exc}")
        secret("MANIFEST_SIGNING_KEY", "manifest_signing_key")
        if isinstance(values.get("manifest_signing_key"), str):
            # Imported here: only a configured key needs the cryptography library at start.
            from sparc_video.evidence.signing import parse_private_key

            try:
                parse_private_key(str(values["manifest_signing_key"]))
            except ValueError as exc:
                problems.append(f"MANIFEST_SIGNING_KEY: {exc}")
        integer("VIDEO_WORKER_CONCURRENCY", "worker_concurrency", 1, 256)
        size("MAX_VIDEO_UPLOAD_SIZE", "max_upload_size")
        integer("MAX_EXPORT_RANGE", "max_export_range_s", 1, 365 * 24 * 3600)
        integer("VIDEO_PROCESSING_TIMEOUT", "processing_timeout_ms", 1000, 7 * 24 * 3600 * 1000)
        integer("VIDEO_JOB_MAX_TRIES", "job_max_tries", 1, 100)
        number("VIDEO_RETRY_INITIAL_DELAY", "retry_initial_delay_s", 0.0, 3600.0)
        number("VIDEO_RETRY_MULTIPLIER", "retry_multiplier", 1.0, 10.0)
        flag("VIDEO_RETRY_TIMEOUTS", "retry_timeouts")
        number("VIDEO_LEASE_TTL", "lease_ttl_s", 1.0, 3600.0)
        number("VIDEO_RECONCILE_INTERVAL", "reconcile_interval_s", 0.1, 3600.0)
        integer("WORKER_SHUTDOWN_GRACE", "worker_shutdown_grace_s", 0, 3600)
        size("VIDEO_PROCESSING_MEMORY_LIMIT", "processing_memory_limit")
        size("VIDEO_PROCESSING_FILE_SIZE_LIMIT", "processing_file_size_limit")
        integer("FAILED_EXPORTS_KEPT", "failed_exports_kept", 0, 10_000_000)
        integer("EXPORT_RETENTION", "export_retention_s", 0, 10 * 365 * 24 * 3600)
        integer("DOWNLOAD_URL_TTL", "download_url_ttl_s", 1, 7 * 24 * 3600)
        integer("DOWNLOAD_URL_MAX_TTL", "download_url_max_ttl_s", 1, 7 * 24 * 3600)
        integer("UPLOAD_RETENTION", "upload_retention_s", 1, 365 * 24 * 3600)
        # Imported here: the storage package imports this module.
        from sparc_video.storage.base import validate_key

        for prefix in names("SOURCE_KEY_PREFIXES", "source_key_prefixes"):
            try:
                validate_key(prefix.removesuffix("/"))
            except ValueError as exc:
                problems.append(f"SOURCE_KEY_PREFIXES: {prefix!r} {exc}")
        for network in names("CAMERA_ALLOWED_NETWORKS", "camera_allowed_networks"):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                problems.append(
                    f"CAMERA_ALLOWED_NETWORKS: {network!r} is not a CIDR such as 10.0.0.0/8"
                )
        integer("MAX_FRAME_PIXELS", "max_frame_pixels", 64 * 64, 8192 * 8192)
        number("MAX_SOURCE_DURATION", "max_source_duration_s", 0.0, 7 * 24 * 3600.0)
        integer("MAX_EXPORT_OPERATIONS", "max_export_operations", 1, 16)
        integer("MAX_EXPORT_THUMBNAILS", "max_export_thumbnails", 1, 10_000)
        size("GRPC_MAX_MESSAGE_SIZE", "grpc_max_message_bytes")
        integer("EVENT_RETENTION", "event_retention_s", 60, 365 * 24 * 3600)
        number("HEALTH_CHECK_INTERVAL", "health_check_interval_s", 0.05, 3600.0)
        size("VIDEO_TEMP_MIN_FREE", "temp_min_free_bytes")
        integer("WORKER_METRICS_PORT", "worker_metrics_port", 0, 65535)
        text("LOG_FORMAT", "log_format")
        flag("AUTH_DISABLED", "auth_disabled")
        tokens = secret_value("AUTH_TOKENS")
        if tokens:
            try:
                values["auth_static_tokens"] = parse_static_tokens(tokens)
            except ValueError as exc:
                problems.append(f"AUTH_TOKENS: {exc}")
        values["auth_jwt_secret"] = secret_value("AUTH_JWT_SECRET")
        values["auth_jwt_public_key"] = secret_value("AUTH_JWT_PUBLIC_KEY")
        text("AUTH_JWT_ISSUER", "auth_jwt_issuer")
        text("AUTH_JWT_AUDIENCE", "auth_jwt_audience")
        text("AUTH_JWT_ROLE_CLAIM", "auth_jwt_role_claim")
        integer("AUTH_JWT_LEEWAY", "auth_jwt_leeway_s", 0, 3600)
        if values["auth_jwt_secret"] and values["auth_jwt_public_key"]:
            problems.append("AUTH_JWT_SECRET and AUTH_JWT_PUBLIC_KEY are both set; set one")
        if values["auth_jwt_secret"] or values["auth_jwt_public_key"]:
            for name, attr in (
                ("AUTH_JWT_ISSUER", "auth_jwt_issuer"),
                ("AUTH_JWT_AUDIENCE", "auth_jwt_audience"),
            ):
                if attr not in values:
                    problems.append(
                        f"{name} must be set with a JWT key: tokens are checked against it"
                    )
        jwt_secret = values["auth_jwt_secret"]
        if isinstance(jwt_secret, str) and len(jwt_secret) < 32:
            problems.append("AUTH_JWT_SECRET must be at least 32 characters (HS256 key)")
        try:
            values["auth_mtls_roles"] = parse_identity_roles(env.get("AUTH_MTLS_ROLES", ""))
        except ValueError as exc:
            problems.append(f"AUTH_MTLS_ROLES: {exc}")
        default_role = env.get("AUTH_MTLS_DEFAULT_ROLE", "").strip()
        if default_role:
            try:
                values["auth_mtls_default_role"] = Role.parse(default_role)
            except ValueError as exc:
                problems.append(f"AUTH_MTLS_DEFAULT_ROLE: {exc}")
        reflection_mode = env.get("GRPC_REFLECTION", "").strip().lower()
        if reflection_mode:
            if reflection_mode not in REFLECTION_MODES:
                problems.append(
                    f"GRPC_REFLECTION={reflection_mode!r} must be one of "
                    + ", ".join(REFLECTION_MODES)
                )
            values["grpc_reflection"] = reflection_mode
        pem_file("GRPC_TLS_CERT_FILE", "tls_cert")
        pem_file("GRPC_TLS_KEY_FILE", "tls_key")
        pem_file("GRPC_TLS_CLIENT_CA_FILE", "tls_client_ca")
        flag("GRPC_TLS_REQUIRE_CLIENT_CERT", "tls_require_client_cert")
        if bool(values.get("tls_cert")) != bool(values.get("tls_key")):
            problems.append("GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE must be set together")
        if values.get("tls_client_ca") and not values.get("tls_cert"):
            problems.append(
                "GRPC_TLS_CLIENT_CA_FILE needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE"
            )
        integer("QUOTA_MAX_QUEUED_EXPORTS", "quota_max_queued_exports", 0, 10_000_000)
        integer("QUOTA_REQUESTS_PER_MINUTE", "quota_requests_per_minute", 0, 10_000_000)
        for name, attr in (
            ("VIDEO_TEMP_DIR", "temp_dir"),
            ("LOCAL_STORAGE_DIR", "local_storage_dir"),
        ):
            raw = env.get(name)
            if raw is not None and raw.strip():
                values[attr] = Path(raw.strip())

        redis_url = str(values.get("redis_url", cls.redis_url))
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(
                f"REDIS_URL={redis_url!r} must start with redis://, rediss:// or unix://"
            )
        log_format = str(values.get("log_format", cls.log_format)).lower()
        if log_format not in ("text", "json"):
            problems.append(f"LOG_FORMAT={log_format!r} must be text or json")
        values["log_format"] = log_format
        ttl = values.get("download_url_ttl_s", cls.download_url_ttl_s)
        cap = values.get("download_url_max_ttl_s", cls.download_url_max_ttl_s)
        if isinstance(ttl, int) and isinstance(cap, int) and ttl > cap:
            problems.append(f"DOWNLOAD_URL_TTL={ttl} is above DOWNLOAD_URL_MAX_TTL={cap}")
        message_bytes = values.get("grpc_max_message_bytes", cls.grpc_max_message_bytes)
        if isinstance(message_bytes, int) and not 64 * 1024 <= message_bytes <= 1024**3:
            problems.append(f"GRPC_MAX_MESSAGE_SIZE={message_bytes} must be 64KiB to 1GiB")
        endpoint = values.get("s3_endpoint_url")
        if isinstance(endpoint, str) and not endpoint.startswith(("http://", "https://")):
            problems.append(f"S3_ENDPOINT_URL={endpoint!r} must be an http:// or https:// URL")
        values = {k: v for k, v in values.items() if v is not None}
        if problems:
            raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems))
        return cls(**values)  # type: ignore[arg-type]


# Documented in `sparc-video --help` and the README; kept next to the parser so they agree.
ENVIRONMENT_HELP = """\
environment:
  REDIS_URL                 redis://host:port/db (default redis://127.0.0.1:6379/0)
  REDIS_PREFIX              prefix of every Redis key (default sparc-video)
  GRPC_PORT, HTTP_PORT      ports of the gRPC API and of /metrics, /health, downloads (50051, 8080)
  PUBLIC_HTTP_URL           base of local-storage download links (default http://127.0.0.1:HTTP_PORT)
  S3_BUCKET                 use S3 storage in this bucket (default: local storage)
  S3_ENDPOINT_URL           S3 API endpoint, e.g. MinIO (default: AWS)
  AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   S3 credentials (default: boto3's chain)
  *_FILE                    any secret (AWS keys, CLOUDFRONT_PRIVATE_KEY, CAMERA_CREDENTIALS_KEY,
                            LOCAL_STORAGE_SIGNING_KEY) may instead be read from a file
  CLOUDFRONT_DOMAIN         hand out download URLs on this CloudFront domain
  CLOUDFRONT_KEY_PAIR_ID, CLOUDFRONT_PRIVATE_KEY(_FILE)   sign them (they expire like S3's)
  LOCAL_STORAGE_DIR         root of local storage (default ./var/storage)
  CAMERA_CREDENTIALS_KEY(_FILE)   Fernet key(s) encrypting camera credentials, comma-separated,
                            first encrypts (default: a key file in LOCAL_STORAGE_DIR)
  MANIFEST_SIGNING_KEY(_FILE)   Ed25519 private key signing export manifests: PEM or the
                            base64 32-byte seed (default: a key file in LOCAL_STORAGE_DIR)
  VIDEO_WORKER_CONCURRENCY  jobs one worker runs at once (default 2)
  VIDEO_TEMP_DIR            worker scratch space (default /tmp/sparc-video)
  VIDEO_PROCESSING_TIMEOUT  per-job limit in milliseconds (default 1800000)
  MAX_VIDEO_UPLOAD_SIZE     largest source accepted, e.g. 5GB (default 5GB)
  MAX_EXPORT_RANGE          longest camera time range of one export, seconds (default 86400)
  DOWNLOAD_URL_TTL          default lifetime of download URLs in seconds (default 900)
  DOWNLOAD_URL_MAX_TTL      longest lifetime a client may ask for, seconds (default 86400)
  UPLOAD_RETENTION          seconds before an upload no export used is removed (default 86400)
  SOURCE_KEY_PREFIXES       key prefixes sources/watermarks/recordings may come from,
                            comma-separated (default: any key but exports/ and snapshots)
  CAMERA_ALLOWED_NETWORKS   CIDRs camera streams may use despite the address policy
                            (loopback, link-local, own Redis/S3...), e.g. 10.9.0.0/16
  MAX_FRAME_PIXELS          largest source picture, width x height (default 67108864)
  MAX_SOURCE_DURATION       longest source in seconds, 0 = no limit (default 86400)
  MAX_EXPORT_OPERATIONS     operations per export, at most 16 (default 16)
  MAX_EXPORT_THUMBNAILS     images (thumbnails, sprite tiles) per export (default 100)
  GRPC_MAX_MESSAGE_SIZE     largest gRPC message either way (default 4MiB)
  VIDEO_JOB_MAX_TRIES       attempts for transient failures (default 3)
  VIDEO_RETRY_INITIAL_DELAY, VIDEO_RETRY_MULTIPLIER   retry backoff (default 5 s, x2)
  VIDEO_RETRY_TIMEOUTS      retry attempts stopped by the processing timeout (default false)
  VIDEO_LEASE_TTL           seconds before a silent worker's export moves on (default 15)
  VIDEO_RECONCILE_INTERVAL  seconds between checks for lost jobs (default 10)
  WORKER_SHUTDOWN_GRACE     seconds a stopping worker lets jobs finish (default 25)
  VIDEO_PROCESSING_MEMORY_LIMIT      address-space cap of the media process (default 4GiB)
  VIDEO_PROCESSING_FILE_SIZE_LIMIT   largest file the media process may write (default 20GB)
  FAILED_EXPORTS_KEPT       failed exports kept for inspection (default 500)
  EXPORT_RETENTION          seconds finished exports are kept, 0 = forever (default 2592000)
  HEALTH_CHECK_INTERVAL     seconds between background dependency checks (default 5)
  VIDEO_TEMP_MIN_FREE       free space VIDEO_TEMP_DIR should keep, e.g. 5GB (default 1GiB)
  WORKER_METRICS_PORT       each worker's /metrics port, 0 = none (default 9091)
  LOG_FORMAT                text or json (default text)
  AUTH_TOKENS(_FILE)        static service tokens PRINCIPAL:ROLE:TOKEN, comma- or line-separated
  AUTH_JWT_SECRET(_FILE)    HS256 key of bearer JWTs (or AUTH_JWT_PUBLIC_KEY(_FILE): PEM, RS256/
                            ES256/EdDSA); with AUTH_JWT_ISSUER, AUTH_JWT_AUDIENCE (required),
                            AUTH_JWT_ROLE_CLAIM (default role), AUTH_JWT_LEEWAY (default 30 s)
  GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE   serve gRPC over TLS with this PEM chain and key
  GRPC_TLS_CLIENT_CA_FILE   mutual TLS: client certificates must chain to these CAs;
                            GRPC_TLS_REQUIRE_CLIENT_CERT (default true) refuses clients without
  AUTH_MTLS_ROLES           client identity (SAN, else CN) to role: id=role,id2=role
  AUTH_MTLS_DEFAULT_ROLE    role of other client certificates (default: none, refused)
  AUTH_DISABLED             true: no authentication, every caller is an admin (development only;
                            `serve` refuses to start with no auth configured otherwise)
  GRPC_REFLECTION           public, authenticated or off (default public)
  QUOTA_MAX_QUEUED_EXPORTS  unfinished exports one principal may have (default 100, 0 = no limit)
  QUOTA_REQUESTS_PER_MINUTE RPCs one principal may start a minute (default 600, 0 = no limit)
  OTEL_*                    OpenTelemetry: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER,
                            OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER... (default: no export)
"""
