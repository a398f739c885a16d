"""Every console page says what it lets people do: each action names the permission it needs,
and each form lists the fields it edits.

Both walk every admin registered on the console site, third-party ones included, so a page
added later cannot skip the rule.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.forms.models import ALL_FIELDS
from django.http import HttpRequest
from django.test import RequestFactory

from accounts.models import User


def _registered() -> Iterator[tuple[str, ModelAdmin[Any]]]:
    for model, model_admin in admin.site._registry.items():
        yield model._meta.label, model_admin


def _superuser_request(method: str = "get") -> HttpRequest:
    request: HttpRequest = getattr(RequestFactory(), method)("/admin/")
    request.user = User(username="root", is_active=True, is_staff=True, is_superuser=True)
    return request


def _every_action(model_admin: ModelAdmin[Any]) -> Iterator[tuple[str, Any]]:
    """The site's actions, the admin's raw `actions` list and what `get_actions` offers."""
    for name, action in admin.site.actions:
        yield name, action
    for entry in model_admin.actions or ():
        if callable(entry):
            yield entry.__name__, entry
        else:
            yield entry, getattr(model_admin, entry)
    for name, (action, _name, _description) in model_admin.get_actions(_superuser_request()).items():
        yield name, action


def test_every_console_action_declares_the_permission_it_needs(db: None) -> None:
    missing = []
    for label, model_admin in _registered():
        for name, action in _every_action(model_admin):
            permissions = getattr(action, "allowed_permissions", None)
            if not permissions:
                missing.append(f"{label}: {name}")
                continue
            for permission in permissions:
                assert callable(getattr(model_admin, f"has_{permission}_permission", None)), (
                    f"{label}: {name} needs '{permission}', which the admin cannot check"
                )
    assert not missing, f"actions offered to anyone who may view the page: {sorted(set(missing))}"


def _edits_implicitly(model_admin: ModelAdmin[Any], request: HttpRequest, obj: Any) -> bool:
    """Whether the page's form takes whatever fields the model has, not a list someone wrote."""
    for declared in (model_admin.fields, model_admin.fieldsets):
        if declared:
            return ALL_FIELDS in (declared if isinstance(declared, list | tuple) else [declared])
    own_layout = type(model_admin).get_fieldsets is not ModelAdmin.get_fieldsets or (
        type(model_admin).get_fields is not ModelAdmin.get_fields
    )
    # Built without the admin's own layout: what the form itself asks for.
    form = model_admin.get_form(request, obj, fields=None)
    meta_fields = getattr(getattr(form, "Meta", None), "fields", None)
    # A form whose fields are all read-only edits nothing.
    return meta_fields == ALL_FIELDS and bool(form.base_fields) and not own_layout


def test_every_console_form_lists_the_fields_it_edits(db: None) -> None:
    implicit = []
    request = _superuser_request()
    for label, model_admin in _registered():
        if model_admin.has_add_permission(request) and _edits_implicitly(model_admin, request, None):
            implicit.append(f"{label} (add)")
        instance = model_admin.model()
        if model_admin.has_change_permission(request, instance) and _edits_implicitly(
            model_admin, request, instance
        ):
            implicit.append(f"{label} (change)")
    assert not implicit, f"forms that edit every model field nobody listed: {implicit}"


@pytest.mark.parametrize("declared", [ALL_FIELDS, [ALL_FIELDS]])
def test_the_field_walk_catches_all_fields(declared: Any, db: None) -> None:
    class Everything(ModelAdmin[User]):
        fields = declared

    assert _edits_implicitly(Everything(User, admin.site), _superuser_request(), None)
    assert _edits_implicitly(ModelAdmin(User, admin.site), _superuser_request(), None)
