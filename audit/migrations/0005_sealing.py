"""Seal the chain off the request path: rows are written unsealed and linked by a sealer.

- `sequence` and `hash` may be NULL (a row not yet sealed); `row_digest` is the keyed digest a
  new row carries until it is sealed.
- The trail is listed in insertion order (`id`), which every row has at once; the indexes that
  served "newest first" by sequence serve it by id.
- A partial index holds the rows still waiting, for the sealer.
- The triggers allow the seal (sequence and hash set once, from NULL, nothing else changing).

Existing rows are all sealed and stay exactly as they are: same sequence, same hash, so the
chain, the checkpoints and exports already taken verify as before. Their `row_digest` is blank,
which only matters for a row not yet sealed. The triggers are taken off while the table is
altered (SQLite rebuilds it) and put back at the end, so no row can be changed meanwhile by
anything but this migration, which changes none.

Deploying: run it, then replace every process. A process still running the previous code
reads the head as the highest sequence, which PostgreSQL's descending order now puts after the
unsealed rows: its audited writes fail (and roll their actions back) until it is replaced.
"""

from django.db import migrations, models

from audit.triggers import append_only_install, append_only_uninstall

# The columns the triggers freeze, as they were before this migration (see 0002) ...
_FROZEN_BEFORE = (
    "id", "sequence", "uuid", "occurred_at", "actor_pseudonym", "actor_kind", "action", "target_type",
    "target_id", "target_pseudonym", "request_id", "outcome", "actor_digest", "target_digest",
    "metadata_json", "hash",
)  # fmt: skip
# ... and from this migration on: the seal columns are set once instead.
_FROZEN = (
    "id", "uuid", "occurred_at", "actor_pseudonym", "actor_kind", "action", "target_type", "target_id",
    "target_pseudonym", "request_id", "outcome", "actor_digest", "target_digest", "metadata_json",
    "row_digest",
)  # fmt: skip
_SEAL = ("sequence", "hash")


def _triggers_off(apps, schema_editor):  # type: ignore[no-untyped-def]
    append_only_uninstall(schema_editor.connection)


def _triggers_before_on(apps, schema_editor):  # type: ignore[no-untyped-def]
    append_only_install(schema_editor.connection, frozen=_FROZEN_BEFORE, seal=())


def _triggers_sealing_on(apps, schema_editor):  # type: ignore[no-untyped-def]
    append_only_install(schema_editor.connection, frozen=_FROZEN, seal=_SEAL)


def _unsealed_refused_then_triggers_off(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Going back needs every row sealed: the columns become NOT NULL again."""
    AuditEvent = apps.get_model("audit", "AuditEvent")
    waiting = AuditEvent.objects.filter(sequence__isnull=True).count()
    if waiting:
        raise RuntimeError(
            f"{waiting} audit events are not sealed yet: run `manage.py audit_seal` with this "
            "code, stop the writers, then migrate back"
        )
    append_only_uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_compliance_permissions"),
    ]

    operations = [
        migrations.RunPython(_triggers_off, _triggers_before_on),
        migrations.AddField(
            model_name="auditevent",
            name="row_digest",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="sequence",
            field=models.PositiveBigIntegerField(blank=True, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["-id"]}),
        migrations.RemoveIndex(model_name="auditevent", name="audit_action_seq"),
        migrations.RemoveIndex(model_name="auditevent", name="audit_actor_seq"),
        migrations.RemoveIndex(model_name="auditevent", name="audit_target_person_seq"),
        migrations.RemoveIndex(model_name="auditevent", name="audit_outcome_seq"),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["action", "-id"], name="audit_action_id"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_pseudonym", "-id"], name="audit_actor_id"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["target_pseudonym", "-id"], name="audit_target_person_id"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["outcome", "-id"], name="audit_outcome_id"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                condition=models.Q(("sequence__isnull", True)), fields=["id"], name="audit_pending"
            ),
        ),
        migrations.RunPython(_triggers_sealing_on, _unsealed_refused_then_triggers_off),
    ]
