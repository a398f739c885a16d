"""Admins map provider groups and link accounts; compliance officers, who see users, see links.
Runs once, so roles an admin later edits stay as edited."""

from django.db import migrations

ROLE_PERMISSIONS = {
    "admin": [
        "add_groupmapping",
        "change_groupmapping",
        "delete_groupmapping",
        "view_groupmapping",
        "add_externalidentity",
        "change_externalidentity",
        "delete_externalidentity",
        "view_externalidentity",
    ],
    "compliance_officer": ["view_externalidentity"],
}


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations; make this app's now to grant them.
    app_config = apps.get_app_config("sso")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        for codename in codenames:
            group.permissions.add(permission_model.objects.get(content_type__app_label="sso", codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("sso", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
