"""Origin checks for websocket handshakes."""

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):  # type: ignore[misc]
    """Reject browser handshakes from origins outside ALLOWED_HOSTS.

    Cross-site websocket hijacking needs a browser, and browsers always send `Origin`;
    API clients (SDKs, curl, servers) send none. Channels' stock validator refuses a
    missing Origin, which would lock those clients out, so only a present Origin is checked.
    """

    def __init__(self, application: Any) -> None:
        allowed = [host for host in settings.ALLOWED_HOSTS if host]
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(super().valid_origin(parsed_origin))
