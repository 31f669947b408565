"""Which network addresses a camera stream may be opened on.

A stream URL is user input the server connects to, so without a policy it is a way to make the
service reach what only it can reach: its own Redis or S3 endpoint, services on loopback, the
cloud metadata endpoint (169.254.169.254). The host of a stream URL is resolved and every
address checked: loopback, link-local, unspecified, multicast and reserved addresses, and the
service's own Redis/S3 endpoints, are refused; CAMERA_ALLOWED_NETWORKS lets chosen networks
through (a camera on loopback in a test, a site network that is link-local), except the
service's own endpoints, which no camera is. The clouds' instance-metadata endpoints (which
hand out the machine's credentials) are refused whatever network is allowed around them:
only an entry naming the one address itself (`169.254.169.254/32`) lets one through, since a
site allowing its link-local or private range never means to allow those. AWS's IPv6 endpoint
sits in fd00::/8, a private range cameras do use, so no category test would catch it.

The check runs when a camera is created or its URL changed (where the host resolves then), and
again in the media child right before it opens the stream, which then connects to the address
it checked (not to a second lookup of the name: no DNS rebinding between check and use).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sparc_video.security.stream_urls import DEFAULT_PORTS

if TYPE_CHECKING:
    # Only for from_settings' signature: the media child imports this module, and the settings
    # model (pydantic-settings, the signing keys) is 25 MB of its peak RSS it never uses.
    from sparc_video.core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
POLICY_NAME = "CAMERA_ALLOWED_NETWORKS"
# The reason of a refusal, in errors and in the media child's replies.
REFUSED_REASON = "ADDRESS_REFUSED"
_S3_PORTS = {"http": 80, "https": 443}
# Instance-metadata (and credential) endpoints of the clouds a service like this runs on.
METADATA_ADDRESSES: dict[IPAddress, str] = {
    ipaddress.ip_address(address): provider
    for address, provider in (
        ("169.254.169.254", "the cloud instance-metadata endpoint (AWS, GCP, Azure, OpenStack)"),
        ("fd00:ec2::254", "AWS's IPv6 instance-metadata endpoint"),
        ("169.254.170.2", "AWS ECS's task-metadata and credentials endpoint"),
        ("fd00:ec2::23", "AWS's IPv6 time and metadata service"),
        ("168.63.129.16", "Azure's WireServer (host metadata)"),
        ("100.100.100.200", "Alibaba Cloud's instance-metadata endpoint"),
        ("192.0.0.192", "Oracle Cloud's instance-metadata endpoint"),
        ("169.254.0.23", "Tencent Cloud's instance-metadata endpoint"),
    )
}


class AddressRefused(Exception):
    """The stream's host is (or resolves to) an address the policy refuses; the message says
    which and how to allow it, without the URL."""


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[str, ...] = ()
    # (host, port, what) of the service's own dependencies.
    endpoints: tuple[tuple[str, int, str], ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        endpoints: list[tuple[str, int, str]] = []
        redis = urlsplit(settings.redis_url)
        if redis.scheme in ("redis", "rediss") and redis.hostname:
            endpoints.append((redis.hostname, redis.port or 6379, "the service's Redis"))
        if settings.s3_endpoint_url:
            s3 = urlsplit(settings.s3_endpoint_url)
            if s3.hostname:
                port = s3.port or _S3_PORTS.get(s3.scheme, 443)
                endpoints.append((s3.hostname, port, "the service's S3 endpoint"))
        return cls(tuple(settings.camera_allowed_networks), tuple(endpoints))

    def to_json(self) -> dict[str, Any]:
        return {"allowed_networks": list(self.allowed_networks), "endpoints": self.endpoints}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AddressPolicy:
        return cls(
            tuple(str(n) for n in data.get("allowed_networks", ())),
            tuple((str(h), int(p), str(w)) for h, p, w in data.get("endpoints", ())),
        )

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why a connection to address:port is refused, or None."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for host, endpoint_port, what in self.endpoints:
            if endpoint_port == port and address in _addresses(host, endpoint_port):
                return f"{address}:{port} is {what}; no camera stream may point at it"
        metadata = METADATA_ADDRESSES.get(address)
        if metadata is not None and not self._names(address):
            return (
                f"{address} is {metadata}, which camera streams may not use; only listing "
                f"{address} itself in {POLICY_NAME} allows it"
            )
        kind = _special(address)
        if kind is None:
            return None
        networks = [ipaddress.ip_network(n, strict=False) for n in self.allowed_networks]
        if any(address.version == n.version and address in n for n in networks):
            return None
        return (
            f"{address} is a {kind} address, which camera streams may not use; add its network "
            f"to {POLICY_NAME} to allow it"
        )

    def _names(self, address: IPAddress) -> bool:
        """Whether an allowed entry is this single address (not a network around it)."""
        for entry in self.allowed_networks:
            network = ipaddress.ip_network(entry, strict=False)
            if network.num_addresses == 1 and network.network_address == address:
                return True
        return False

    def check_url(self, url: str) -> list[str]:
        """The addresses the URL's host stands for, all allowed; AddressRefused otherwise.

        A name that does not resolve gives [] (the camera may be unreachable right now); the
        check before opening then fails on the lookup instead.
        """
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        found = [literal] if literal is not None else sorted(_addresses(host, port), key=str)
        for address in found:
            problem = self.refusal(address, port)
            if problem is not None:
                shown = f"{host} ({address})" if literal is None else str(address)
                raise AddressRefused(problem.replace(str(address), shown, 1))
        return [str(a) for a in found]


def _special(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:  # 240.0.0.0/4, broadcast included
        return "reserved"
    return None


def _addresses(host: str, port: int) -> frozenset[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return frozenset()
    found: set[IPAddress] = set()
    for info in infos:
        # Drop an IPv6 zone (fe80::1%eth0): ip_address does not take it.
        text = str(info[4][0]).split("%", 1)[0]
        found.add(ipaddress.ip_address(text))
    return frozenset(found)
