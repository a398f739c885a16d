"""Chain the trail: sequence numbers, hashes, pseudonyms, canonical metadata, triggers.

Rows written before this migration are chained in the order they were written, so a trail
that predates it verifies like any other.
"""

import secrets
import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from audit import chain
from audit.triggers import append_only_install, append_only_uninstall


def _chain_existing(apps, schema_editor):  # type: ignore[no-untyped-def]
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditSubject = apps.get_model("audit", "AuditSubject")
    keys: dict[int, tuple[str, bytes]] = {}

    def subject(user_id: int | None, display: str) -> tuple[str, bytes]:
        if user_id is None:
            return "", b""
        if user_id not in keys:
            row, _ = AuditSubject.objects.get_or_create(
                user_id=user_id, defaults={"display": display, "key": secrets.token_hex(32)}
            )
            keys[user_id] = (str(row.pseudonym), bytes.fromhex(row.key))
        return keys[user_id]

    previous = chain.GENESIS
    for sequence, event in enumerate(AuditEvent.objects.order_by("id").iterator(), start=1):
        pseudonym, key = subject(event.actor_id, event.actor_display)
        event.sequence = sequence
        event.actor_pseudonym = uuid.UUID(pseudonym) if pseudonym else None
        event.metadata_json = chain.metadata_canonical(event.metadata or {})
        actor_values = [event.actor_display or "", event.client_ip or "", event.user_agent or ""]
        event.actor_digest = chain.personal_digest(key, actor_values)
        # A person as target gets their pseudonym and key too, so erasure reaches these rows.
        is_person = event.target_type == "accounts.user" and event.target_id.isdigit()
        target_pseudonym, target_key = subject(int(event.target_id), event.target_display) if is_person else ("", b"")
        event.target_pseudonym = uuid.UUID(target_pseudonym) if target_pseudonym else None
        event.target_digest = chain.personal_digest(target_key, [event.target_display or ""])
        values = [
            sequence,
            str(event.uuid),
            chain.timestamp_canonical(event.occurred_at),
            pseudonym,
            event.actor_kind,
            event.action,
            event.target_type,
            event.target_id,
            target_pseudonym,
            event.request_id,
            event.outcome,
            event.actor_digest,
            event.target_digest,
            event.metadata_json,
        ]
        event.hash = previous = chain.link_hash(previous, chain.event_canonical(values))
        # Named fields only: rewriting the actor column would queue foreign-key checks that
        # PostgreSQL refuses to carry into this migration's later ALTER TABLE.
        event.save(
            update_fields=[
                "sequence", "actor_pseudonym", "target_pseudonym", "metadata_json", "actor_digest",
                "target_digest", "hash",
            ]
        )


# The columns the triggers freeze, as they were when this migration was written.
_FROZEN = (
    "id", "sequence", "uuid", "occurred_at", "actor_pseudonym", "actor_kind", "action", "target_type",
    "target_id", "target_pseudonym", "request_id", "outcome", "actor_digest", "target_digest",
    "metadata_json", "hash",
)  # fmt: skip


def _triggers_install(apps, schema_editor):  # type: ignore[no-untyped-def]
    append_only_install(schema_editor.connection, frozen=_FROZEN)


def _triggers_uninstall(apps, schema_editor):  # type: ignore[no-untyped-def]
    append_only_uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditSubject",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("pseudonym", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("display", models.CharField(blank=True, max_length=255)),
                ("key", models.CharField(blank=True, max_length=64)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("erased_at", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="audit_subject",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.RemoveIndex(model_name="auditevent", name="audit_action_time"),
        migrations.RemoveIndex(model_name="auditevent", name="audit_actor_time"),
        migrations.AddField("auditevent", "sequence", models.PositiveBigIntegerField(null=True)),
        migrations.AddField("auditevent", "actor_pseudonym", models.UUIDField(blank=True, null=True)),
        migrations.AddField("auditevent", "target_pseudonym", models.UUIDField(blank=True, null=True)),
        migrations.AddField("auditevent", "metadata_json", models.TextField(default="{}")),
        migrations.AddField("auditevent", "actor_digest", models.CharField(default="", max_length=64)),
        migrations.AddField("auditevent", "target_digest", models.CharField(default="", max_length=64)),
        migrations.AddField("auditevent", "hash", models.CharField(default="", max_length=64)),
        migrations.AlterField(
            "auditevent",
            "occurred_at",
            models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
        migrations.RunPython(_chain_existing, migrations.RunPython.noop),
        migrations.RemoveField("auditevent", "metadata"),
        migrations.AlterField("auditevent", "sequence", models.PositiveBigIntegerField(unique=True)),
        migrations.AlterField("auditevent", "actor_digest", models.CharField(max_length=64)),
        migrations.AlterField("auditevent", "target_digest", models.CharField(max_length=64)),
        migrations.AlterField("auditevent", "hash", models.CharField(max_length=64)),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["-sequence"]}),
        migrations.AddIndex(
            "auditevent", models.Index(fields=["action", "-sequence"], name="audit_action_seq")
        ),
        migrations.AddIndex(
            "auditevent", models.Index(fields=["actor_pseudonym", "-sequence"], name="audit_actor_seq")
        ),
        migrations.AddIndex(
            "auditevent",
            models.Index(fields=["target_pseudonym", "-sequence"], name="audit_target_person_seq"),
        ),
        migrations.AddIndex(
            "auditevent", models.Index(fields=["outcome", "-sequence"], name="audit_outcome_seq")
        ),
        migrations.RunPython(_triggers_install, _triggers_uninstall),
    ]
