"""The one guard for network calls to an address a user supplied (remote upstreams, webhooks).

`outbound_url_check(url=...)` raises `OutboundUrlRefused` unless the URL is plain http or
https without credentials and every address its host resolves to may be reached:

- link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254) never;
- multicast, broadcast and reserved addresses never;
- private, loopback, unique-local, carrier-grade NAT and "this network" addresses (10/8,
  172.16/12, 192.168/16, 127/8, 0/8, 100.64/10, ::1, ::, fc00::/7) only when the host name or
  a network holding the address is listed in GATEHOUSE_REMOTE_ALLOWED_HOSTS (with DEBUG on,
  loopback is allowed without it);
- IPv4 addresses wrapped in IPv6 (mapped, compatible, 6to4, NAT64) are judged as the IPv4
  address they carry.

Call it when the URL is accepted *and* right before each call: a name can resolve
elsewhere later. Clients that use it must not follow redirects (a redirect would skip it).
"""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_HOSTS_SETTING = "GATEHOUSE_REMOTE_ALLOWED_HOSTS"

_NEVER = tuple(
    ipaddress.ip_network(network) for network in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
)
_NOT_UNICAST = tuple(
    ipaddress.ip_network(network)
    for network in ("224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "ff00::/8")
)
_LOOPBACK = tuple(ipaddress.ip_network(network) for network in ("127.0.0.0/8", "::1/128"))
_PRIVATE = (
    *_LOOPBACK,
    *(
        ipaddress.ip_network(network)
        for network in (
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "0.0.0.0/8",
            "100.64.0.0/10",
            "::/128",
            "fc00::/7",
        )
    ),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class OutboundUrlRefused(ValueError):
    """The URL may not be called from this server; the message says which rule refused it."""


def outbound_url_check(*, url: str) -> None:
    """Raise OutboundUrlRefused unless this server may call `url` (see the module's rules)."""
    host, port = _host_and_port(url)
    allowed = _allowed_entries()
    for address in _addresses(host, port):
        _address_check(host=host, address=address, allowed=allowed)


async def outbound_url_check_async(*, url: str) -> None:
    """`outbound_url_check` from an event loop: a host name is resolved off the loop (an IP
    address, the common case for in-cluster upstreams, needs no resolving)."""
    host, port = _host_and_port(url)
    allowed = _allowed_entries()
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        addresses = await asyncio.get_running_loop().run_in_executor(None, _addresses, host, port)
    for address in addresses:
        _address_check(host=host, address=address, allowed=allowed)


def _host_and_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as invalid:
        raise OutboundUrlRefused(f"The URL {url!r} is not valid (bad host or port: {invalid}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundUrlRefused(f"Only http or https URLs may be called, not {scheme or 'a bare path'!r}.")
    if parts.username is not None or parts.password is not None:
        raise OutboundUrlRefused(
            "A URL may not carry credentials (user:password@); name the key in a credential reference."
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise OutboundUrlRefused(f"The URL {url!r} names no host.")
    return host, port or (443 if scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise OutboundUrlRefused(f"The host name {host!r} does not resolve ({error}).") from None
    addresses = [_literal(str(info[4][0])) for info in found]
    resolved = [address for address in addresses if address is not None]
    if not resolved:
        raise OutboundUrlRefused(f"The host name {host!r} does not resolve to an IP address.")
    return resolved


def _literal(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None


def _carried_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, compatible), else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _allowed_entries() -> tuple[set[str], list[IPNetwork]]:
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in getattr(settings, ALLOWED_HOSTS_SETTING, ()):
        entry = str(raw).strip().lower().strip("[]").rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry)
    return hosts, networks


def _address_check(*, host: str, address: IPAddress, allowed: tuple[set[str], list[IPNetwork]]) -> None:
    judged = {address, _carried_ipv4(address)}
    shown = f"{host!r} ({address})" if host != str(address) else str(address)
    if any(candidate in network for candidate in judged for network in _NEVER):
        raise OutboundUrlRefused(
            f"{shown} is a link-local or cloud metadata address, which may never be called."
        )
    if any(candidate in network for candidate in judged for network in _NOT_UNICAST):
        raise OutboundUrlRefused(f"{shown} is not a unicast address and may not be called.")
    if not any(candidate in network for candidate in judged for network in _PRIVATE):
        return
    hosts, networks = allowed
    if host.lower() in hosts or any(candidate in network for candidate in judged for network in networks):
        return
    if settings.DEBUG and any(candidate in network for candidate in judged for network in _LOOPBACK):
        return
    raise OutboundUrlRefused(
        f"{shown} is a private or loopback address; list the host or its network in "
        f"{ALLOWED_HOSTS_SETTING} to allow it."
    )
