"""SCIM tokens are an admin's: the admin role (which holds everything) gets this app's
permissions. Runs once, so roles an admin later edits stay as edited."""

from django.db import migrations


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations; make this app's now to grant them.
    app_config = apps.get_app_config("scim")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    admin, _ = group_model.objects.get_or_create(name="admin")
    admin.permissions.add(*permission_model.objects.filter(content_type__app_label="scim"))


class Migration(migrations.Migration):
    dependencies = [
        ("scim", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
