"""X-Forwarded-For is believed only when a configured proxy sent it."""

import pytest
from django.test import override_settings

from accounts.client_ip import client_ip_resolve, ip_in_networks


def test_without_trusted_proxies_the_header_changes_nothing() -> None:
    assert client_ip_resolve(remote_addr="198.51.100.7", forwarded_for="10.0.0.1") == "198.51.100.7"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("10.0.0.2", "203.0.113.5", "203.0.113.5"),  # one trusted proxy
        ("10.0.0.2", "203.0.113.5, 10.0.0.3", "203.0.113.5"),  # two trusted hops
        ("10.0.0.2", "1.1.1.1, 203.0.113.5", "203.0.113.5"),  # the client forged 1.1.1.1 first
        ("198.51.100.7", "203.0.113.5", "198.51.100.7"),  # not from our proxy: ignored
        ("10.0.0.2", "not-an-ip", "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
    ],
)
def test_trusted_proxies_vouch_only_for_their_own_hop(remote: str, forwarded: str, expected: str) -> None:
    assert client_ip_resolve(remote_addr=remote, forwarded_for=forwarded) == expected


def test_network_membership() -> None:
    assert ip_in_networks(address="10.1.2.3", networks=["10.0.0.0/8"])
    assert not ip_in_networks(address="11.1.2.3", networks=["10.0.0.0/8"])
    assert not ip_in_networks(address=None, networks=["0.0.0.0/0"])
    assert ip_in_networks(address="::1", networks=["::1/128"])
