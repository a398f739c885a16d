"""Who may use a model: object-level grants to users and teams (django-guardian)."""

from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from accounts.models import Team, User
from audit.services import audit_event_record
from audit.subjects import audit_pseudonym
from inference.models import Model
from inference.selectors import USE_MODEL
from inference.services._actors import actor_kwargs


def _grantee_display(grantee: User | Team) -> str:
    # A person by pseudonym: metadata is chained, so a username there could never be erased.
    return f"team {grantee.name}" if isinstance(grantee, Team) else f"user {audit_pseudonym(user=grantee)}"


@transaction.atomic
def model_access_grant(*, model: Model, grantee: User | Team, actor: User | None) -> None:
    """Let a user, or every member of a team, use `model` (a guardian object permission)."""
    assign_perm(USE_MODEL, grantee.group if isinstance(grantee, Team) else grantee, model)
    audit_event_record(
        action="model.access.granted",
        target=model,
        metadata={"grantee": _grantee_display(grantee), "permission": USE_MODEL},
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )


@transaction.atomic
def model_access_revoke(*, model: Model, grantee: User | Team, actor: User | None) -> None:
    remove_perm(USE_MODEL, grantee.group if isinstance(grantee, Team) else grantee, model)
    audit_event_record(
        action="model.access.revoked",
        target=model,
        metadata={"grantee": _grantee_display(grantee), "permission": USE_MODEL},
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )
