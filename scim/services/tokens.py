"""Writes on SCIM tokens: made (shown once), revoked, and their use noted."""

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_event_record
from scim.models import ScimToken
from scim.tokens import scim_token_format, scim_token_material_new, scim_token_secret_hash

# Writing last_used_at once a minute at most keeps authentication from being a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def _actor(user: User | None) -> dict[str, Any]:
    """The audit record's actor: the admin, or the system (a command run without --by)."""
    if user is not None:
        return {"actor": user}
    return {"actor_display": "system", "actor_kind": AuditEvent.ActorKind.SYSTEM}


@transaction.atomic
def scim_token_create(*, name: str, created_by: User | None) -> tuple[ScimToken, str]:
    """A new SCIM token; returns the row and the token itself, which is never stored and must
    be shown once. Raises ValidationError for an empty or over-long name."""
    prefix, secret = scim_token_material_new()
    token = ScimToken(
        name=name.strip(), prefix=prefix, secret_hash=scim_token_secret_hash(secret), created_by=created_by
    )
    token.full_clean()
    token.save()
    audit_event_record(
        action="scim.token.created",
        target=token,
        metadata={"name": token.name, "prefix": prefix},
        **_actor(created_by),
    )
    return token, scim_token_format(prefix=prefix, secret=secret)


@transaction.atomic
def scim_token_revoke(*, token: ScimToken, actor: User | None) -> ScimToken:
    """Revoke `token`: refused from the next request on. Revoking a revoked token does nothing."""
    token = ScimToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_event_record(
        action="scim.token.revoked",
        target=token,
        metadata={"name": token.name, "prefix": token.prefix},
        **_actor(actor),
    )
    return token


def scim_token_touch(*, token: ScimToken) -> None:
    """Note that `token` was used now, at most once a minute (bookkeeping, not audited)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at <= LAST_USED_RESOLUTION:
        return
    ScimToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
