"""Reads for identity and access."""

from django.db.models import QuerySet

from accounts.models import ApiKey, Team, User
from gatehouse.local_cache import LocalCache


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """`user`'s own keys, newest first, revoked ones included (they show as revoked)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at")


def api_key_get(*, user: User, key_id: int) -> ApiKey | None:
    """One of `user`'s own keys; None for a key that is not theirs, exactly as for none."""
    return api_key_list(user=user).filter(pk=key_id).first()


# A user's teams, per process, dropped everywhere when memberships change (gatehouse.local_cache).
_teams: LocalCache[int, tuple[int, ...]] = LocalCache("teams by user")


def api_key_model_names(*, api_key: ApiKey) -> list[str]:
    """The names of the models a key is limited to (none: it is not limited)."""
    from inference.models import Model

    if not api_key.model_ids:
        return []
    return sorted(Model.objects.filter(pk__in=api_key.model_ids).values_list("name", flat=True))


def user_team_ids(*, user: User) -> tuple[int, ...]:
    """The ids of the teams `user` is in, in order."""
    return _teams.fetch(
        user.pk,
        lambda: tuple(Team.objects.filter(group__user=user).order_by("pk").values_list("pk", flat=True)),
    )
