"""Checks that the production profile's services answer, with messages a person can act on."""

import socket
from urllib.parse import urlparse


def tcp_reachable(url: str, *, default_port: int, timeout: float = 2.0) -> str | None:
    """None if something listens at the URL's host and port, else why not."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{parsed.scheme}://{host}:{port} is not reachable ({exc})"
