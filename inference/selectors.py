"""Reads of the model registry."""

from django.db.models import QuerySet

from accounts.models import User
from inference.models import Model, ModelVersion


def model_list_usable(*, user: User) -> QuerySet[Model]:
    """Models `user` may run. Object-level grants to users and teams extend this (identity issue)."""
    if not user.is_active:
        return Model.objects.none()
    if user.is_superuser:
        return Model.objects.all()
    return Model.objects.filter(open_to_all=True)


def model_get_usable(*, user: User, name: str) -> Model | None:
    """The model called `name` if `user` may use it; None also when it exists but is not theirs."""
    return model_list_usable(user=user).filter(name=name).first()


def model_version_serving(*, model: Model) -> ModelVersion | None:
    return model.versions.filter(status=ModelVersion.Status.PRODUCTION).first()
