"""Seeing everyone's usage on the console dashboard is a permission: admins and auditors hold it.

Staff status alone no longer opens the dashboard. Runs once, so roles an admin later edits
stay as edited.
"""

from django.db import migrations

DASHBOARD_ROLES = ["admin", "auditor"]


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations; make this app's now to grant them.
    app_config = apps.get_app_config("accounts")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    dashboard = permission_model.objects.get(
        content_type__app_label="accounts", codename="view_usage_dashboard"
    )
    for role in DASHBOARD_ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.add(dashboard)


def revoke(apps, schema_editor):  # type: ignore[no-untyped-def]
    permission_model = apps.get_model("auth", "Permission")
    permission_model.objects.filter(
        content_type__app_label="accounts", codename="view_usage_dashboard"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0010_user_manager_audited"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="usagerollup",
            options={
                "permissions": [("view_usage_dashboard", "Can see everyone's usage on the console dashboard")]
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
