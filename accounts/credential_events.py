"""Tell a user's open websocket connections that their credentials changed.

A websocket outlives the request that opened it. When a key is revoked, sessions end (logout,
logout everywhere, a console logout, a password change) or the account is deactivated, every connection of that user is told (through its per-user channel
layer group) to re-check its credentials at once, instead of at its next frame.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.dispatch import receiver

from gatehouse.local_cache import local_caches_invalidate

logger = logging.getLogger(__name__)

CREDENTIALS_CHANGED = "credentials.changed"


def user_group(*, user_id: int) -> str:
    """The channel layer group every websocket connection of one user joins."""
    return f"user.{user_id}"


def credentials_changed_notify(*, user_id: int) -> None:
    """After the change commits, ask the user's connections to re-check their credentials.

    Best effort by design: if the channel layer is down, connections still re-check on their
    next frame, so a failure here is logged and never undoes the revocation.
    """

    # The request path's caches of who may do what are dropped in every process too.
    local_caches_invalidate(reason=f"credentials of user {user_id} changed")

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(user_group(user_id=user_id), {"type": CREDENTIALS_CHANGED})
        except Exception:
            logger.exception("could not tell user %s's websockets that their credentials changed", user_id)

    transaction.on_commit(send)


@receiver(user_logged_out, dispatch_uid="accounts.credential_events.console_logout")
def _console_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """A console logout ends that session: its websockets (cookie or ticket) re-check and close."""
    if user is not None and user.pk is not None:
        credentials_changed_notify(user_id=user.pk)
