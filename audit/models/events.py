"""The audit trail: one row per security-relevant action, chained by hashes.

Rows are written only through `audit.services.audit_event_record`. The database refuses to
change or delete them (triggers in `audit.triggers`); the one change it allows is erasure
blanking a person's details, which the chain does not cover (see `audit.chain`).
"""

import json
import uuid
from functools import cached_property
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    class ActorKind(models.TextChoices):
        USER = "user", "User"
        API_KEY = "api_key", "API key"
        SYSTEM = "system", "System"
        ANONYMOUS = "anonymous", "Anonymous"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        DENIED = "denied", "Denied"

    # The chain position: 1, 2, 3... with no gaps. Unique, so two appends can never fork it.
    sequence = models.PositiveBigIntegerField(unique=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Set in Python before hashing (not auto_now_add) so the hashed value is the stored one.
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    # A convenience join to the live user. Erasure and user deletion null it; the chain covers
    # the pseudonym instead.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_pseudonym = models.UUIDField(null=True, blank=True)
    actor_display = models.CharField(max_length=255, blank=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    # Set when the target is a person, so their erasure reaches rows about them too.
    target_pseudonym = models.UUIDField(null=True, blank=True)
    target_display = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    # Canonical JSON text (sorted keys, no spaces): hashed exactly as stored, on every database.
    metadata_json = models.TextField(default="{}")
    actor_digest = models.CharField(max_length=64)
    target_digest = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-sequence"]
        indexes = [
            models.Index(fields=["action", "-sequence"], name="audit_action_seq"),
            models.Index(fields=["actor_pseudonym", "-sequence"], name="audit_actor_seq"),
            models.Index(fields=["target_pseudonym", "-sequence"], name="audit_target_person_seq"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
            models.Index(fields=["request_id"], name="audit_request"),
            models.Index(fields=["outcome", "-sequence"], name="audit_outcome_seq"),
        ]

    def __str__(self) -> str:
        return (
            f"#{self.sequence} {self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_display or '-'} {self.action}"
        )

    @cached_property
    def metadata(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.metadata_json)
        return loaded


class AuditSubject(models.Model):
    """The mapping from a pseudonym in the trail to a person, and the key of their details.

    It lives outside the chain: erasure deletes the key and the name here (and blanks the
    details in the trail's rows), and every hash in the chain still verifies.
    """

    pseudonym = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_subject",
    )
    display = models.CharField(max_length=255, blank=True)
    # 32 random bytes, hex. Empty once erased: the digests made with it can no longer be linked.
    key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.pseudonym} ({'erased' if self.erased_at else self.display})"
