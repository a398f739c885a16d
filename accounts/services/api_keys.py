"""API keys: created with the secret shown once, revoked with effect on the next request."""

import ipaddress
from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.credential_events import credentials_changed_notify
from accounts.key_material import api_key_format, api_key_material_new, api_key_secret_hash
from accounts.models import ApiKey, User
from audit.services import audit_event_record
from audit.subjects import audit_pseudonym

MAX_KEYS_PER_USER = 50


def _networks_normalised(entries: Iterable[str]) -> list[str]:
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise ValidationError(
                {"allowed_networks": f"{entry!r} is not an IP address or CIDR range."}
            ) from None
    return networks


@transaction.atomic
def api_key_create(
    *,
    user: User,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    allowed_networks: Iterable[str] = (),
    models: Iterable[str] = (),
    actor: User,
) -> tuple[ApiKey, str]:
    """Create a key for `user`, limited to `models` (names; none: every model `user` may use).
    Returns the row and the full key, which is never stored.

    Raises ValidationError for an unknown scope, a past expiry, a model `user` may not use (or
    that does not exist: the same words), or past the keys a person may hold."""
    scope_list = sorted(set(scopes))
    unknown = sorted(set(scope_list) - set(ApiKey.Scope.values))
    if not scope_list or unknown:
        raise ValidationError({"scopes": f"Choose one or more of {', '.join(ApiKey.Scope.values)}."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    # The owner's row lock serialises concurrent creations for one person, so the count below
    # cannot be read by two of them before either inserts (PostgreSQL; SQLite locks the database).
    # NO KEY UPDATE: rows that merely reference the user (an audit event's actor, whose insert
    # runs under the chain's lock) take KEY SHARE on it and must not wait for this lock.
    User.objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk", flat=True).first()
    if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_KEYS_PER_USER:
        raise ValidationError({"name": f"An account may hold at most {MAX_KEYS_PER_USER} active keys."})
    model_ids = _models_of_owner(user=user, names=models)
    prefix, secret = api_key_material_new()
    key = ApiKey(
        user=user,
        name=name,
        prefix=prefix,
        secret_hash=api_key_secret_hash(secret),
        scopes=scope_list,
        allowed_networks=_networks_normalised(allowed_networks),
        model_ids=model_ids,
        expires_at=expires_at,
    )
    key.full_clean()
    key.save()
    audit_event_record(
        action="apikey.created",
        actor=actor,
        target=key,
        target_subject=user,
        metadata={
            "owner": audit_pseudonym(user=user),
            "after": {
                "name": name,
                "prefix": prefix,
                "scopes": scope_list,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "allowed_networks": key.allowed_networks,
                "models": sorted(set(models)),
            },
        },
    )
    return key, api_key_format(prefix=prefix, secret=secret)


def _models_of_owner(*, user: User, names: Iterable[str]) -> list[int]:
    """The ids of the models called `names`, each one `user` may use; a key never reaches
    past its owner."""
    from inference.selectors import model_list_usable

    wanted = sorted(set(names))
    if not wanted:
        return []
    found = dict(model_list_usable(user=user).filter(name__in=wanted).values_list("name", "pk"))
    if missing := [name for name in wanted if name not in found]:
        raise ValidationError(
            {"models": f"No model named {', '.join(missing)} that this key's owner may use."}
        )
    return sorted(found.values())


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: User) -> ApiKey:
    """Revoke a key (idempotent); the next request that presents it is refused."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        return api_key
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    credentials_changed_notify(user_id=api_key.user_id)
    audit_event_record(
        action="apikey.revoked",
        actor=actor,
        target=api_key,
        target_subject=api_key.user,
        metadata={"owner": audit_pseudonym(user=api_key.user), "prefix": api_key.prefix},
    )
    return api_key


@transaction.atomic
def api_key_rehash(*, api_key: ApiKey, secret: str) -> None:
    """Store a key's hash under the current pepper, once it was used under an old one.

    Called on the first use after a pepper rotation, so that the old pepper can leave
    API_KEY_PEPPER_FALLBACKS once the trail shows every live key re-hashed.
    """
    api_key.secret_hash = api_key_secret_hash(secret)
    api_key.save(update_fields=["secret_hash"])
    audit_event_record(
        action="apikey.rehashed",
        target=api_key,
        target_subject=api_key.user,
        actor=api_key.user,  # the key's holder, whose request moved it on
        metadata={"prefix": api_key.prefix, "reason": "pepper rotated"},
    )
