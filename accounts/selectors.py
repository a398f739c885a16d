"""Reads for identity and access."""

from django.db.models import QuerySet

from accounts.models import ApiKey, User


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """`user`'s own keys, newest first, revoked ones included (they show as revoked)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at")


def api_key_get(*, user: User, key_id: int) -> ApiKey | None:
    """One of `user`'s own keys; None for a key that is not theirs, exactly as for none."""
    return api_key_list(user=user).filter(pk=key_id).first()
