"""Structured logs: export id, job id, attempt and trace id on every line; secrets never.

`bind()` puts fields into a context variable for the current task (an RPC, a job); a filter
copies them, with the current trace and span ids, onto every record. `LOG_FORMAT=json` writes one
JSON object per line for log collectors; the default text format appends the same fields.

Both formats pass the finished line through `Redactor`: presigned-URL signatures and
credentials, local download signatures, passwords in URLs and the configured secrets are
replaced, whatever logged them (our code, a library, an exception message).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from types import MappingProxyType
from typing import Any, TextIO

from sparc_video.core.settings import Settings, reveal
from sparc_video.observability.tracing import trace_ids

CONTEXT_FIELDS = ("export_id", "job_id", "attempt", "worker_id", "rpc", "principal")
# Immutable mappings: bind/update replace the value, so a task never changes its parent's fields.
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "sparc_video_log_context", default=MappingProxyType({})
)

REDACTED = "REDACTED"
# Query parameters that grant access: S3 SigV4/SigV2 presigned URLs, CloudFront signed URLs,
# and our local download links (sig=).
_URL_SECRETS = re.compile(
    r"(?i)([?&;](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|"
    r"AWSAccessKeyId|Policy|Key-Pair-Id|sig)=)[^&\s\"'<>]+"
)
# SigV4 Authorization headers, should a library print one.
_AUTH_HEADER = re.compile(r"(?i)((?:Credential|Signature)=)[A-Za-z0-9/+=_\-]+")
# Bearer tokens (static service tokens, JWTs), should an authorization header be printed.
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+")
# Passwords in URLs (redis://:password@host, https://user:password@host).
_URL_PASSWORD = re.compile(r"(://[^\s:/@]*:)[^\s@/]+@")

# These libraries log request signatures, headers and bodies at DEBUG; they stay at INFO or
# above even when the service runs at DEBUG.
_CHATTY_LOGGERS = ("botocore", "aiobotocore", "boto3", "s3transfer", "urllib3", "aiohttp.client")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = _URL_SECRETS.sub(rf"\1{REDACTED}", text)
        text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
        text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
        text = _BEARER.sub(rf"\1{REDACTED}", text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def settings_secrets(settings: Settings) -> list[str]:
    """Every configured value that must never appear in a log line."""
    values = [
        reveal(settings.aws_secret_access_key),
        reveal(settings.aws_access_key_id),
        reveal(settings.local_signing_key),
        reveal(settings.auth_jwt_secret),
    ]
    secrets = [v for v in values if v]
    secrets += [
        k.strip() for k in (reveal(settings.camera_credentials_key) or "").split(",") if k.strip()
    ]
    secrets += [entry.token for entry in settings.auth_static_tokens]
    # A PEM key is logged, if ever, line by line or with escaped newlines: redact each line.
    for pem in (
        reveal(settings.cloudfront_private_key) or "",
        settings.tls_key.decode("ascii", "replace"),
        reveal(settings.manifest_signing_key) or "",
    ):
        secrets += [line.strip() for line in pem.splitlines() if len(line.strip()) >= 16]
    return secrets


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written by this task (and tasks it starts) meanwhile."""
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **fields}))
    try:
        yield
    finally:
        # ValueError: closed from another context. gRPC drops a server stream's generator
        # when its client leaves during a write (every live viewer that stops watching) and
        # the event loop's finalizer closes it in a task of its own; the fields set here
        # ended with the task that set them.
        with suppress(ValueError):
            _CONTEXT.reset(token)


def update(**fields: Any) -> None:
    """Add fields for the rest of the current `bind` (e.g. the attempt once it is known)."""
    _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **fields}))


def current() -> dict[str, Any]:
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Copies the bound fields and the trace ids onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _CONTEXT.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        trace_id, span_id = trace_ids()
        record.trace_id = getattr(record, "trace_id", None) or trace_id
        record.span_id = getattr(record, "span_id", None) or span_id
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(
            f"{name}={value}"
            for name in (*CONTEXT_FIELDS, "trace_id")
            if (value := getattr(record, name, None)) not in (None, "")
        )
        if extra:
            head, sep, tail = text.partition("\n")
            text = f"{head} [{extra}]{sep}{tail}"
        return self._redact(text)


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, "trace_id", "span_id"):
            value = getattr(record, name, None)
            if value not in (None, ""):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return self._redact(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(
    settings: Settings,
    level: str | int = "INFO",
    *,
    stream: TextIO | None = None,
    exclusive: bool = False,
) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) in settings.log_format.

    Replaces the handler a previous call installed; with `exclusive`, every other root handler
    too (the command line's), else they stay (pytest's capture, say). Returns the handler.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if exclusive or getattr(handler, "_sparc_video", False):
            root.removeHandler(handler)
    redact = Redactor(settings_secrets(settings))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._sparc_video = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    formatter = JsonFormatter(redact) if settings.log_format == "json" else TextFormatter(redact)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    floor = max(root.level, logging.INFO)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(floor)
    return handler
