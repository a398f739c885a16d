"""Reads of the model registry."""

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.models import User
from inference.models import Model, ModelVersion

USE_MODEL = "inference.use_model"


def model_list_usable(*, user: User) -> QuerySet[Model]:
    """Models `user` may run: open ones, ones granted to them or a team of theirs, or all for
    holders of the global `use_model` permission (admins, model managers)."""
    if not user.is_active:
        return Model.objects.none()
    if user.has_perm(USE_MODEL):
        return Model.objects.all()
    granted = get_objects_for_user(user, USE_MODEL, klass=Model, accept_global_perms=False)
    return Model.objects.filter(Q(open_to_all=True) | Q(pk__in=granted.values("pk"))).distinct()


def model_get_usable(*, user: User, name: str) -> Model | None:
    """The model called `name` if `user` may use it; None also when it exists but is not theirs."""
    return model_list_usable(user=user).filter(name=name).first()


def model_version_serving(*, model: Model) -> ModelVersion | None:
    return model.versions.filter(status=ModelVersion.Status.PRODUCTION).first()
