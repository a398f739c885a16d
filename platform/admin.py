"""The console pages of the libraries Gatehouse installs, held to the console's own rules.

Every action names the permission it needs (viewing a page is not changing it) and every form
lists the fields it edits. django-celery-beat's schedule pages and simplejwt's token lists come
without that, so they are registered again here (admin autodiscovery reaches this module after
the libraries' own, which are listed before `gatehouse` in INSTALLED_APPS).
"""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import IntervalSchedule, PeriodicTask, SolarSchedule
from rest_framework_simplejwt.token_blacklist import admin as blacklist_admin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken


def _described(action: Any) -> str:
    return str(getattr(action, "short_description", action.__name__))


_Beat: Any = beat_admin.PeriodicTaskAdmin


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):  # type: ignore[misc]
    """Beat's schedule: switching tasks on or off, or running them now, changes the schedule."""

    @admin.action(description=_described(_Beat.enable_tasks), permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().enable_tasks(request, queryset)

    @admin.action(description=_described(_Beat.disable_tasks), permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().disable_tasks(request, queryset)

    @admin.action(description=_described(_Beat.toggle_tasks), permissions=["change"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().toggle_tasks(request, queryset)

    @admin.action(description=_described(_Beat.run_tasks), permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().run_tasks(request, queryset)


class SolarScheduleAdmin(beat_admin.SolarScheduleAdmin):  # type: ignore[misc]
    fields = ("event", "latitude", "longitude")


class IntervalScheduleAdmin(beat_admin.IntervalScheduleAdmin):  # type: ignore[misc]
    fields = ("every", "period")


class BlacklistedTokenAdmin(blacklist_admin.BlacklistedTokenAdmin):
    """Read-only: tokens are revoked by logging out (audited); deleting a row would revive one."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


_REPLACED: list[tuple[Any, type[admin.ModelAdmin[Any]]]] = [
    (PeriodicTask, PeriodicTaskAdmin),
    (SolarSchedule, SolarScheduleAdmin),
    (IntervalSchedule, IntervalScheduleAdmin),
    (BlacklistedToken, BlacklistedTokenAdmin),
]
for _model, _admin_class in _REPLACED:
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin_class)
