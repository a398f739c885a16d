"""Reads of the model registry and of conversations."""

import hashlib
import uuid
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.models import ApiKey, User
from gatehouse.local_cache import LocalCache
from inference.engines.base import ChatMessage
from inference.models import Conversation, Model, ModelVersion

USE_MODEL = "inference.use_model"


def model_list_usable(*, user: User, api_key: ApiKey | None = None) -> QuerySet[Model]:
    """Models `user` may run: open ones, ones granted to them or a team of theirs, or all for
    holders of the global `use_model` permission (admins, model managers); through `api_key`,
    only those of them the key is limited to (where it is)."""
    if not user.is_active:
        return Model.objects.none()
    if user.has_perm(USE_MODEL):
        usable = Model.objects.all()
    else:
        granted = get_objects_for_user(user, USE_MODEL, klass=Model, accept_global_perms=False)
        usable = Model.objects.filter(Q(open_to_all=True) | Q(pk__in=granted.values("pk"))).distinct()
    if api_key is not None and api_key.model_ids:
        usable = usable.filter(pk__in=api_key.model_ids)
    return usable


def model_get_usable(*, user: User, name: str, api_key: ApiKey | None = None) -> Model | None:
    """The model called `name` if `user` (through `api_key`) may use it; None also when it
    exists but is not theirs."""
    return (
        model_list_usable(user=user, api_key=api_key)
        .filter(name=name)
        .select_related("canary_version__model")
        .prefetch_related("canary_version__deployments")
        .first()
    )


def model_registry_list() -> QuerySet[Model]:
    """Every model with its versions and canary, for those who manage the registry."""
    return (
        Model.objects.select_related("canary_version")
        .prefetch_related("versions__deployments")
        .order_by("name")
    )


def model_registry_get(*, name: str) -> Model | None:
    return model_registry_list().filter(name=name).first()


def model_version_serving(*, model: Model) -> ModelVersion | None:
    """The production version, its deployments read with it (routing reads them on the loop)."""
    return (
        model.versions.filter(status=ModelVersion.Status.PRODUCTION).prefetch_related("deployments").first()
    )


def route_bucket(*, model_id: int, sticky_key: str) -> int:
    """A stable number in 0..99 for a conversation: the same key always lands in the same bucket."""
    digest = hashlib.sha256(f"{model_id}:{sticky_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def model_version_route(
    *, model: Model, sticky_key: str, serving: ModelVersion | None = None
) -> ModelVersion | None:
    """The version that serves this conversation: the canary for its share of buckets, else
    production (`serving`, when the caller has it at hand)."""
    canary = model.canary_version
    if (
        canary is not None
        and canary.status == ModelVersion.Status.STAGING
        and route_bucket(model_id=model.pk, sticky_key=sticky_key) < model.canary_weight
    ):
        return canary
    return serving if serving is not None else model_version_serving(model=model)


@dataclass(frozen=True)
class ModelRoutes:
    """A model a user may run, with its production version (None: none in production)."""

    model: Model
    serving: ModelVersion | None


# What each user may run and where it is served, held per process and dropped everywhere on
# any change to models, versions, grants, roles or teams (gatehouse.local_cache). Only models
# that exist for the user are kept: made-up names cannot push the real ones out.
_routes: LocalCache[tuple[int, str], ModelRoutes | None] = LocalCache("model routes")


def model_routes_for(*, user: User, name: str) -> ModelRoutes | None:
    """The model called `name` and its serving version, if `user` may use it (else None)."""

    def load() -> ModelRoutes | None:
        model = model_get_usable(user=user, name=name)
        if model is None:
            return None
        return ModelRoutes(model=model, serving=model_version_serving(model=model))

    return _routes.fetch((user.pk, name), load, keep=lambda routes: routes is not None)


# The versions generations run, by id, held and dropped like the routes above: a worker loads
# each once, not once per generation. Shared by the threads that run them: read, never changed.
_versions: LocalCache[int, ModelVersion] = LocalCache("versions by id")


def model_version_for_run(*, version_id: int) -> ModelVersion:
    """The version a generation runs, with its model, from this process's cache where it holds
    it. Raises `ModelVersion.DoesNotExist` for an id that is not there (nothing is kept then)."""
    return _versions.fetch(
        version_id, lambda: ModelVersion.objects.select_related("model").get(pk=version_id)
    )


# The models each user may use, held and dropped like the routes above.
_usable: LocalCache[int, tuple[Model, ...]] = LocalCache("usable models")


def model_list_usable_cached(*, user: User, api_key: ApiKey | None = None) -> list[Model]:
    """`model_list_usable`'s models, from this process's cache where it holds them (inside
    `local_caches_only()` a miss raises `NotCached`); a key limited to some models sees only
    those."""
    usable = _usable.fetch(user.pk, lambda: tuple(model_list_usable(user=user)))
    if api_key is None or not api_key.model_ids:
        return list(usable)
    allowed = set(api_key.model_ids)
    return [model for model in usable if model.pk in allowed]


def conversation_list_own(*, user: User) -> QuerySet[Conversation]:
    """The caller's conversations, newest first; nobody else's, admins included."""
    return (
        Conversation.objects.filter(owner=user)
        .select_related("model")
        .annotate(message_count=Count("messages"))
    )


def conversation_get_own(*, user: User, conversation_id: str) -> Conversation | None:
    """One of the caller's conversations; None for a missing one or another's (indistinguishable)."""
    try:
        key = uuid.UUID(conversation_id)
    except (ValueError, TypeError):
        return None
    return Conversation.objects.filter(owner=user, pk=key).select_related("model").first()


def conversation_history(*, conversation: Conversation) -> list[ChatMessage]:
    return [
        ChatMessage(role=message.role, content=message.content) for message in conversation.messages.all()
    ]
