"""Who is calling: principals, and turning a call's credentials into one.

A call proves who it is with a bearer token in its `authorization` metadata (a static service
token from AUTH_TOKENS, or a JWT checked against the configured key, issuer and audience) or
with a client certificate (mutual TLS; its identity, a SAN or else the CN, names the
principal). What a principal may do is `roles.py`'s table, enforced by `auth_interceptor.py`;
which exports it sees is the domain's business (`exports.py`).

Secrets stay secret: tokens are compared as SHA-256 digests in constant time, and no error,
log line or span repeats what a caller sent.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sparc_video.core.errors import Unauthenticated
from sparc_video.core.settings import Settings
from sparc_video.security.roles import Role

log = logging.getLogger(__name__)

_BEARER_PREFIX = "bearer "


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `role` None: known, but allowed nothing."""

    id: str
    role: Role | None
    # How it proved who it is: "token", "jwt", "mtls" or "disabled".
    via: str

    def has_role(self, needed: Role) -> bool:
        return self.role is not None and self.role >= needed

    @property
    def sees_all(self) -> bool:
        """An admin sees every principal's resources."""
        return self.role == Role.ADMIN

    def owns(self, requester: str) -> bool:
        """Whether this principal may see a resource `requester` created: its own, or any as
        an admin."""
        return self.sees_all or (bool(requester) and requester == self.id)


# Every caller while AUTH_DISABLED=true.
LOCAL_ADMIN = Principal("local", Role.ADMIN, "disabled")

# The principal of the RPC being handled, set by the auth interceptor around the handler.
_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("sparc_video_caller")


def current_principal() -> Principal:
    """The caller of the current RPC. Fails closed when no interceptor authenticated it."""
    principal = _CALLER.get(None)
    if principal is None:
        raise Unauthenticated("the call was not authenticated")
    return principal


def set_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _CALLER.set(principal)


def reset_principal(token: contextvars.Token[Principal]) -> None:
    # A stream closed by the garbage collector ends in another context: nothing to undo.
    with contextlib.suppress(ValueError):
        _CALLER.reset(token)


class AuthNotConfigured(ValueError):
    """`serve` was started with no way to authenticate callers and without AUTH_DISABLED."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class StaticTokens:
    """Service tokens from configuration, compared in constant time."""

    def __init__(self, entries: Iterable[tuple[str, Role, str]]) -> None:
        # Digests, so comparisons take the same time whatever the tokens' lengths.
        self._entries = [
            (_digest(token), Principal(pid, role, "token")) for pid, role, token in entries
        ]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def match(self, token: str) -> Principal | None:
        presented = _digest(token)
        found: Principal | None = None
        # Every entry is compared, so timing says nothing about which one matched.
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest):
                found = principal
        return found


def jwt_algorithms_for(public_key_pem: str) -> tuple[Any, list[str]]:
    """The key object and the one algorithm family its type allows (RS256, ES256.., EdDSA).

    Fixing the algorithm by the key, never by the token's header, rules out algorithm
    confusion (an HS256 token "signed" with the public key, or `alg: none`).
    """
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode())
    except ValueError as exc:
        raise ValueError(f"AUTH_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in by_curve:
            raise ValueError(f"AUTH_JWT_PUBLIC_KEY: unsupported curve {key.curve.name}")
        return key, [by_curve[key.curve.name]]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, ["EdDSA"]
    raise ValueError("AUTH_JWT_PUBLIC_KEY must be an RSA, EC (P-256/384/521) or Ed25519 key")


class JwtVerifier:
    def __init__(self, settings: Settings) -> None:
        self._key: Any
        if settings.auth_jwt_secret:
            self._key, self._algorithms = settings.auth_jwt_secret.get_secret_value(), ["HS256"]
        else:
            assert settings.auth_jwt_public_key
            self._key, self._algorithms = jwt_algorithms_for(
                settings.auth_jwt_public_key.get_secret_value()
            )
        self._issuer = settings.auth_jwt_issuer
        self._audience = settings.auth_jwt_audience
        self._role_claim = settings.auth_jwt_role_claim
        self._leeway = settings.auth_jwt_leeway_s

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                "the bearer token has expired; get a new one", reason="TOKEN_EXPIRED"
            ) from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise Unauthenticated(
                "the bearer token was issued for another service (issuer or audience)",
                reason="INVALID_TOKEN",
            ) from None
        except jwt.InvalidTokenError:
            # PyJWT's messages can quote parts of the token: say nothing of it.
            raise Unauthenticated("the bearer token is not valid", reason="INVALID_TOKEN") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("the bearer token has no subject", reason="INVALID_TOKEN")
        return Principal(subject, _highest_role(claims.get(self._role_claim)), "jwt")


def _highest_role(claim: Any) -> Role | None:
    names = [claim] if isinstance(claim, str) else claim if isinstance(claim, list) else []
    roles = []
    for name in names:
        if isinstance(name, str):
            try:
                roles.append(Role.parse(name))
            except ValueError:
                continue
    return max(roles) if roles else None


class Authenticator:
    """Credentials of one call → its Principal, or Unauthenticated."""

    def __init__(self, settings: Settings) -> None:
        self.disabled = settings.auth_disabled
        if not self.disabled and not settings.auth_configured:
            raise AuthNotConfigured(
                "no authentication is configured: set AUTH_TOKENS, AUTH_JWT_SECRET or "
                "AUTH_JWT_PUBLIC_KEY, or GRPC_TLS_CLIENT_CA_FILE (mutual TLS) — or "
                "AUTH_DISABLED=true to let every caller in as an admin (development only)"
            )
        self._tokens = StaticTokens(
            (e.principal, e.role, e.token) for e in settings.auth_static_tokens
        )
        self._jwt = (
            JwtVerifier(settings)
            if settings.auth_jwt_secret or settings.auth_jwt_public_key
            else None
        )
        self._mtls = bool(settings.tls_client_ca)
        self._mtls_roles = dict(settings.auth_mtls_roles)
        self._mtls_default = settings.auth_mtls_default_role

    def authenticate(
        self,
        metadata: Sequence[tuple[str, str | bytes]] | None,
        peer_identities: Iterable[bytes] | None,
    ) -> Principal:
        if self.disabled:
            return LOCAL_ADMIN
        bearer = _bearer_token(metadata)
        if bearer is not None:
            return self._from_token(bearer)
        identities = [i.decode("utf-8", "replace") for i in peer_identities or ()]
        if self._mtls and identities:
            return self._from_certificate(identities)
        raise Unauthenticated(
            "this call needs credentials: an `authorization: Bearer TOKEN` header"
            + (" or a client certificate" if self._mtls else ""),
            reason="CREDENTIALS_MISSING",
        )

    def _from_token(self, token: str) -> Principal:
        principal = self._tokens.match(token) if self._tokens else None
        if principal is not None:
            return principal
        if self._jwt is not None and token.count(".") == 2:
            return self._jwt.verify(token)
        raise Unauthenticated("the bearer token is not valid", reason="INVALID_TOKEN")

    def _from_certificate(self, identities: list[str]) -> Principal:
        # A certificate may name several identities (SANs): the first one mapped to a role
        # counts, else the first one with the default role.
        for identity in identities:
            if identity in self._mtls_roles:
                return Principal(identity, self._mtls_roles[identity], "mtls")
        return Principal(identities[0], self._mtls_default, "mtls")


def _bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    values = [v for k, v in metadata or () if k.lower() == "authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated(
            "send one authorization header, not several", reason="INVALID_CREDENTIALS"
        )
    value = values[0].decode("latin-1") if isinstance(values[0], bytes) else values[0]
    if not value.lower().startswith(_BEARER_PREFIX) or not value[len(_BEARER_PREFIX) :].strip():
        raise Unauthenticated(
            "the authorization header must be `Bearer TOKEN`", reason="INVALID_CREDENTIALS"
        )
    return value[len(_BEARER_PREFIX) :].strip()
