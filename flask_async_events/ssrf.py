"""SSRF protection: webhooks never reach loopback, private, link-local, multicast or cloud-metadata
addresses unless ``ASYNC_EVENTS_ALLOWED_NETWORKS`` says so.

The check runs when a subscription is created and again at connect time: the http notifier checks
the very address libcurl is about to connect to, so a DNS answer that changes in between
(rebinding) cannot slip through.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence

from flask_async_events.errors import ForbiddenAddress, InvalidValue

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance-metadata endpoints: AWS, ECS tasks, AWS over IPv6, Alibaba Cloud.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (``127.0.0.0/8``) or single addresses; ``ValueError`` names the bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise InvalidValue(f"{value!r} is not an IP network (use CIDR, e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def _embedded(address: IPAddress) -> list[IPAddress]:
    """Any IPv4 address carried inside an IPv6 one (mapped, 6to4, Teredo), then the address itself."""
    found: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        for inner in (address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None):
            if inner is not None:
                found.append(inner)
    return [*found, address]


class AddressPolicy:
    """Which addresses webhooks may connect to."""

    def __init__(self, allowed: Sequence[IPNetwork] = ()) -> None:
        self.allowed = tuple(allowed)

    def reason(self, address: IPAddress) -> str | None:
        """Why ``address`` is forbidden, or None if it is allowed."""
        candidates = _embedded(address)
        if any(candidate in network for candidate in candidates for network in self.allowed):
            return None
        for candidate in candidates:
            if candidate in METADATA_ADDRESSES:
                return "a cloud metadata address"
            if candidate.is_loopback:
                return "a loopback address"
            if candidate.is_link_local:
                return "a link-local address"
            if candidate.is_multicast:
                return "a multicast address"
            if candidate.is_private:
                return "a private address"
            if not candidate.is_global:
                return "a reserved address"
        return None

    def check(self, host: str, address: IPAddress) -> None:
        reason = self.reason(address)
        if reason is not None:
            raise ForbiddenAddress(
                f"{host} resolves to {address}, {reason}; webhooks may not be sent there "
                "(allow it with ASYNC_EVENTS_ALLOWED_NETWORKS)"
            )

    def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        """Every address of ``host`` as ``(family, address)``, each checked; raises if any is forbidden."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[tuple[int, str]] = []
        for family, _, _, _, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            self.check(host, address)
            if (family, str(address)) not in addresses:
                addresses.append((family, str(address)))
        return addresses

    def check_recipient_host(self, host: str) -> None:
        """Subscribe-time check. A name that does not resolve now is checked again at connect time."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            self.check(host, literal)
            return
        with contextlib.suppress(socket.gaierror):
            self.resolve(host, 443)
