"""The ASGI application: HTTP through Django (chat completions on their own route,
inference.chat.asgi), websockets through Channels, and a lifespan
that drains this process's generations on shutdown (gatehouse.lifespan)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse.settings")

# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.websocket_auth import WebsocketAuthMiddlewareStack  # noqa: E402
from gatehouse.lifespan import lifespan  # noqa: E402
from gatehouse.tracing import tracing_http_app  # noqa: E402
from gatehouse.websocket_origin import BrowserOriginValidator  # noqa: E402
from inference.chat.asgi import ChatCompletionsRoute  # noqa: E402
from inference.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Chat completions with a bearer credential skip Django's request cycle (the fast path).
        # Inside the OpenTelemetry ASGI instrumentation only where tracing is on (gatehouse.tracing).
        "http": tracing_http_app(ChatCompletionsRoute(django_asgi_app)),  # type: ignore[arg-type]
        "websocket": BrowserOriginValidator(WebsocketAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "lifespan": lifespan,
    }
)
