"""The outbound guard: which URLs a user-supplied value may make this server call."""

import socket
from collections.abc import Callable
from typing import Any

import pytest

from gatehouse.outbound import OutboundUrlRefused, outbound_url_check


def _resolving_to(*addresses: str) -> Callable[..., list[Any]]:
    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port or 0),
            )
            for address in addresses
        ]

    return getaddrinfo


@pytest.fixture
def nothing_allowed(settings: Any) -> None:
    settings.DEBUG = False
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/v1",
        "http://[fd00:ec2::254]/v1",
        "http://[::ffff:169.254.169.254]/v1",
    ],
)
def test_link_local_and_metadata_addresses_are_always_refused(settings: Any, url: str) -> None:
    settings.DEBUG = True
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = ["169.254.0.0/16", "fe80::/10", "fd00::/8"]
    with pytest.raises(OutboundUrlRefused, match="link-local or cloud metadata"):
        outbound_url_check(url=url)


@pytest.mark.usefixtures("nothing_allowed")
@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/v1",
        "http://172.16.0.9/v1",
        "http://192.168.1.1/v1",
        "http://127.0.0.1:8000/v1",
        "http://[::1]/v1",
        "http://[fc00::5]/v1",
        "http://0.0.0.0/v1",
        "http://100.64.0.1/v1",
        "http://[::ffff:10.0.0.1]/v1",
        "http://[::ffff:127.0.0.1]/v1",
    ],
)
def test_private_addresses_are_refused_unless_listed(url: str) -> None:
    with pytest.raises(OutboundUrlRefused, match="GATEHOUSE_REMOTE_ALLOWED_HOSTS"):
        outbound_url_check(url=url)


def test_a_listed_network_or_host_lets_private_addresses_through(settings: Any, monkeypatch: Any) -> None:
    settings.DEBUG = False
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = ["10.0.0.0/8", "vllm.internal"]
    outbound_url_check(url="http://10.1.2.3:8000/v1")
    outbound_url_check(url="http://[::ffff:10.1.2.3]:8000/v1")
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to("192.168.7.7"))
    outbound_url_check(url="https://vllm.internal/v1")
    with pytest.raises(OutboundUrlRefused, match=r"192\.168\.1\.1"):
        outbound_url_check(url="http://192.168.1.1/v1")


def test_debug_allows_loopback_only(settings: Any) -> None:
    settings.DEBUG = True
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = []
    outbound_url_check(url="http://127.0.0.1:8000/v1")
    outbound_url_check(url="http://[::1]:8000/v1")
    with pytest.raises(OutboundUrlRefused, match="private"):
        outbound_url_check(url="http://10.0.0.1/v1")


@pytest.mark.usefixtures("nothing_allowed")
def test_every_address_a_name_resolves_to_is_checked(monkeypatch: Any) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to("93.184.216.34", "169.254.169.254"))
    with pytest.raises(OutboundUrlRefused, match=r"169\.254\.169\.254"):
        outbound_url_check(url="https://upstream.example.com/v1")
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to("93.184.216.34", "10.0.0.7"))
    with pytest.raises(OutboundUrlRefused, match=r"10\.0\.0\.7"):
        outbound_url_check(url="https://upstream.example.com/v1")
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to("93.184.216.34", "2606:2800:220:1::1"))
    outbound_url_check(url="https://upstream.example.com/v1")


@pytest.mark.usefixtures("nothing_allowed")
def test_a_name_that_does_not_resolve_is_refused(monkeypatch: Any) -> None:
    def unresolvable(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    with pytest.raises(OutboundUrlRefused, match="does not resolve"):
        outbound_url_check(url="https://nowhere.invalid/v1")


@pytest.mark.usefixtures("nothing_allowed")
@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("file:///etc/passwd", "http or https"),
        ("gopher://93.184.216.34/", "http or https"),
        ("https://user:secret@93.184.216.34/v1", "credentials"),
        ("https:///v1", "host"),
        ("https://93.184.216.34:99999/v1", "port"),
    ],
)
def test_only_plain_http_urls_without_credentials(url: str, rule: str) -> None:
    with pytest.raises(OutboundUrlRefused, match=rule):
        outbound_url_check(url=url)


def test_a_public_address_passes(settings: Any) -> None:
    settings.DEBUG = False
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = []
    outbound_url_check(url="https://93.184.216.34/v1")
