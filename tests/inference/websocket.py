"""Helpers to drive /ws/chat/ through the project's real ASGI application."""

from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.models import User
from accounts.services import TokenPair, auth_tokens_obtain
from tests.conftest import PASSWORD
from tests.profile import PRODUCTION

# A Celery worker loads the model on its first task; give it room.
FRAME_TIMEOUT = 60.0 if PRODUCTION else 20.0


def token_pair(user: User) -> TokenPair:
    """Log `user` in as a client would (fixture users share one password)."""
    return auth_tokens_obtain(username=user.get_username(), password=PASSWORD, client_ip="127.0.0.1")


async def access_token(user: User) -> str:
    return (await database_sync_to_async(token_pair)(user)).access


def communicator_for(
    *, token: str | None = None, origin: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> WebsocketCommunicator:
    from gatehouse.asgi import application

    all_headers = list(headers or [])
    if token is not None:
        all_headers.append((b"authorization", f"Bearer {token}".encode()))
    if origin is not None:
        all_headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, "/ws/chat/", headers=all_headers)


def chat_frame(client_id: str = "c1", **overrides: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "chat",
        "id": client_id,
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 12,
        "temperature": 0.7,
    }
    frame.update(overrides)
    return frame


async def frames_until_end(communicator: WebsocketCommunicator, client_id: str) -> list[dict[str, Any]]:
    """Every frame for `client_id` up to and including its `done` or `error`."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=FRAME_TIMEOUT)
        if frame.get("id") != client_id:
            continue
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames


async def chat_once(user: User, client_id: str, **overrides: Any) -> list[dict[str, Any]]:
    """Open a connection as `user`, run one chat to its end, close; every frame for it."""
    communicator = communicator_for(token=await access_token(user))
    await communicator.connect()
    await communicator.send_json_to(chat_frame(client_id, **overrides))
    frames = await frames_until_end(communicator, client_id)
    await communicator.disconnect()
    return frames
