"""Give each role of SPEC §4 its default permission set, once.

Runs once, so permissions an admin later edits in the console stay as edited. Object-level
access to models (`use_model` on one model) is granted per model through guardian; the
global `use_model` given to admins and model managers means "every model".
"""

from django.db import migrations

ROLE_PERMISSIONS = {
    "model_manager": [
        "inference.add_model",
        "inference.change_model",
        "inference.view_model",
        "inference.use_model",
        "inference.add_modelversion",
        "inference.change_modelversion",
        "inference.view_modelversion",
    ],
    "member": [],
    "auditor": ["audit.view_auditevent"],
    "compliance_officer": ["accounts.view_user", "audit.view_auditevent"],
}


def seed_role_permissions(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; create them now to assign them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    admin, _ = group_model.objects.get_or_create(name="admin")
    admin.permissions.set(permission_model.objects.all())
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        for name in names:
            app_label, codename = name.split(".")
            group.permissions.add(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_identity"),
        ("audit", "0001_initial"),
        ("inference", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed_role_permissions, migrations.RunPython.noop)]
