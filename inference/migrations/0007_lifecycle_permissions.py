"""The lifecycle's own permissions (promote, canary, retire), given to admins and model managers.

Editing a version's page (`change_modelversion`) no longer lets one put it in front of users;
the console's actions check these. Runs once, so roles an admin later edits stay as edited.
"""

from django.db import migrations

LIFECYCLE_PERMISSIONS = ["promote_modelversion", "canary_modelversion", "retire_modelversion"]
ROLES = ["admin", "model_manager"]


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations; make this app's now to grant them.
    app_config = apps.get_app_config("inference")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    lifecycle = permission_model.objects.filter(
        content_type__app_label="inference", codename__in=LIFECYCLE_PERMISSIONS
    )
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.add(*lifecycle)


def revoke(apps, schema_editor):  # type: ignore[no-untyped-def]
    permission_model = apps.get_model("auth", "Permission")
    permission_model.objects.filter(
        content_type__app_label="inference", codename__in=LIFECYCLE_PERMISSIONS
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0006_model_access_grants"),
        ("accounts", "0004_role_permissions"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="modelversion",
            options={
                "ordering": ["model__name", "-created_at"],
                "permissions": [
                    ("promote_modelversion", "Can promote a version to production or roll back"),
                    ("canary_modelversion", "Can start and stop a canary"),
                    ("retire_modelversion", "Can retire a version"),
                ],
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
