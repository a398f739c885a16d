"""Seed the five roles of SPEC §4 as groups; their permission sets are curated in the console."""

from django.db import migrations

ROLES = ("admin", "model_manager", "member", "auditor", "compliance_officer")


def seed_roles(apps, schema_editor):  # type: ignore[no-untyped-def]
    group = apps.get_model("auth", "Group")
    for name in ROLES:
        group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    # Reversing leaves the groups in place: they may hold members and edited permissions.
    operations = [migrations.RunPython(seed_roles, migrations.RunPython.noop)]
