"""The client's IP address, believing X-Forwarded-For only from configured proxies.

Anyone can send an X-Forwarded-For header; only a proxy we run may vouch for the address
behind it. Walking the header from the right, each hop added by a trusted proxy is
skipped; the first address no trusted proxy vouches for is the client.
"""

import ipaddress
from collections.abc import Iterable
from functools import cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _in_any(address: str, networks: Iterable[Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_ip_resolve(*, remote_addr: str | None, forwarded_for: str | None) -> str | None:
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    if not remote_addr or not forwarded_for or not _in_any(remote_addr, trusted):
        return remote_addr
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _in_any(hop, trusted):
            return hop if _is_ip(hop) else remote_addr
    return hops[0] if hops and _is_ip(hops[0]) else remote_addr


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_in_networks(*, address: str | None, networks: Iterable[str]) -> bool:
    """Whether `address` falls inside one of the CIDR ranges (an unknown address never does)."""
    return address is not None and _in_any(address, _networks(tuple(networks)))
