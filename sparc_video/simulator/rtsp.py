"""RTSP/1.0 on the camera's side (RFC 2326): reading requests and interleaved data from one
TCP connection, and HTTP Basic and Digest authentication (RFC 7617, RFC 2617) as IP cameras
ask for it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import socket
from dataclasses import dataclass

AUTH_SCHEMES = ("basic", "digest")
REALM = "sparc-video test camera"
_DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]  # names lower-cased

    @property
    def line(self) -> str:
        return f"{self.method} {self.url} RTSP/1.0"

    @property
    def cseq(self) -> str:
        return self.headers.get("cseq", "0")


class Reader:
    """Requests from a connection; interleaved frames (the client's RTCP) are skipped."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buffer = b""

    def _fill(self) -> bool:
        chunk = self._conn.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def next(self) -> Request | None:
        """The next request; None when the client closed the connection."""
        while True:
            if self._buffer[:1] == b"$":
                if len(self._buffer) < 4:
                    if not self._fill():
                        return None
                    continue
                size = 4 + int.from_bytes(self._buffer[2:4], "big")
                while len(self._buffer) < size:
                    if not self._fill():
                        return None
                self._buffer = self._buffer[size:]
                continue
            if b"\r\n\r\n" not in self._buffer:
                if not self._fill():
                    return None
                continue
            head, _, rest = self._buffer.partition(b"\r\n\r\n")
            lines = head.decode(errors="replace").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
            }
            length = int(headers.get("content-length", "0") or 0)
            while len(rest) < length:
                if not self._fill():
                    return None
                rest = self._buffer.partition(b"\r\n\r\n")[2]
            self._buffer = rest[length:]
            method, _, remainder = lines[0].partition(" ")
            return Request(method, remainder.rpartition(" ")[0] or remainder, headers)


def response(
    status: int, reason: str, cseq: str, headers: list[tuple[str, str]], body: str = ""
) -> bytes:
    lines = [f"RTSP/1.0 {status} {reason}", f"CSeq: {cseq}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@dataclass(frozen=True)
class Auth:
    """Credentials the camera requires, and the schemes it offers (and accepts)."""

    username: str
    password: str
    schemes: tuple[str, ...] = AUTH_SCHEMES

    def __post_init__(self) -> None:
        unknown = set(self.schemes) - set(AUTH_SCHEMES)
        if unknown or not self.schemes:
            raise ValueError(f"auth schemes: some of {', '.join(AUTH_SCHEMES)}")

    def challenges(self, nonce: str) -> list[str]:
        """WWW-Authenticate values, in the order offered."""
        offers = {
            "digest": f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5',
            "basic": f'Basic realm="{REALM}"',
        }
        return [offers[s] for s in self.schemes]

    def accepts(self, request: Request, nonce: str) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        scheme = scheme.lower()
        if scheme not in self.schemes:
            return False
        if scheme == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return hmac.compare_digest(value.strip(), expected)
        fields = {m[1].lower(): m[2] or m[3] for m in _DIGEST_FIELD.finditer(value)}
        if fields.get("username") != self.username or fields.get("nonce") != nonce:
            return False
        ha1 = _md5(f"{self.username}:{fields.get('realm', '')}:{self.password}")
        ha2 = _md5(f"{request.method}:{fields.get('uri', '')}")
        if fields.get("qop"):
            parts = [fields.get(k, "") for k in ("nc", "cnonce", "qop")]
            expected = _md5(":".join([ha1, nonce, *parts, ha2]))
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        return fields.get("realm") == REALM and hmac.compare_digest(
            fields.get("response", ""), expected
        )


def new_nonce() -> str:
    return secrets.token_hex(16)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()
