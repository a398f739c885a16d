"""Who an audited registry change is attributed to."""

from accounts.models import User
from audit.models import AuditEvent


def actor_kwargs(actor: User | None) -> dict[str, object]:
    """`audit_event_record` arguments for `actor`, or for the system when there is none."""
    if actor is not None:
        return {"actor": actor}
    return {"actor_display": "system", "actor_kind": AuditEvent.ActorKind.SYSTEM}
