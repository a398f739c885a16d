"""Who may work the compliance queue in the console: officers view and add requests; admins all."""

from django.db import migrations

OFFICER_PERMISSIONS = ["view_exportrequest", "add_exportrequest", "view_erasurerequest", "add_erasurerequest"]


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    # Permissions are normally made after all migrations; make this app's now to grant them.
    app_config = apps.get_app_config("audit")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    mine = permission_model.objects.filter(
        content_type__app_label="audit", content_type__model__in=["exportrequest", "erasurerequest"]
    )
    admin, _ = group_model.objects.get_or_create(name="admin")
    admin.permissions.add(*mine)
    officer, _ = group_model.objects.get_or_create(name="compliance_officer")
    officer.permissions.add(*mine.filter(codename__in=OFFICER_PERMISSIONS))


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_compliance_requests"),
        ("accounts", "0004_role_permissions"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
