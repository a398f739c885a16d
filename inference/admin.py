from django.contrib import admin

from inference.models import Model, ModelVersion


class ModelVersionInline(admin.TabularInline[ModelVersion, Model]):
    model = ModelVersion
    extra = 0
    fields = ("label", "backend", "status", "dtype", "context_length", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin[Model]):
    list_display = ("name", "open_to_all", "max_tokens_cap", "updated_at")
    search_fields = ("name", "description")
    inlines = [ModelVersionInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin[ModelVersion]):
    list_display = ("__str__", "backend", "status", "dtype", "created_at")
    list_filter = ("status", "backend")
    # Status changes go through services (audited); the manifest is set at registration.
    readonly_fields = ("status", "manifest", "created_by", "created_at")
