"""The audit trail: one row per security-relevant action, chained by hashes.

Rows are written only through `audit.services.audit_event_record`, unsealed: no chain position
and no hash yet, but a keyed digest of their contents. The sealer (`audit.sealing`) links them
into the chain in insertion order moments later. The database refuses to change or delete
rows (triggers in `audit.triggers`); the changes it allows are the seal itself (sequence and
hash set once, from nothing) and erasure blanking a person's details, which the chain does not
cover (see `audit.chain`).
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

    # The chain position: 1, 2, 3... with no gaps, given by the sealer; NULL until then. Unique,
    # so two sealers could never fork the chain even without their lock.
    sequence = models.PositiveBigIntegerField(unique=True, null=True, blank=True)
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
    # The chain hash, given with the sequence by the sealer; NULL until then (not "": a row is
    # sealed or not, and the triggers let these two go from NULL to a value exactly once).
    hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL means unsealed
    # HMAC of the chained content but the sequence (`audit.chain.pending_digest`), under a key
    # derived from SECRET_KEY, written with the row: the sealer refuses a row that no longer
    # matches it. Blank on rows sealed before sealing moved off the request path.
    row_digest = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        # Insertion order: every row has an id at once; sealed rows also have a sequence.
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["action", "-id"], name="audit_action_id"),
            models.Index(fields=["actor_pseudonym", "-id"], name="audit_actor_id"),
            models.Index(fields=["target_pseudonym", "-id"], name="audit_target_person_id"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
            models.Index(fields=["request_id"], name="audit_request"),
            models.Index(fields=["outcome", "-id"], name="audit_outcome_id"),
            # What the sealer reads: the rows still waiting, oldest first. Small, since rows
            # leave it within a second or so.
            models.Index(fields=["id"], condition=models.Q(sequence__isnull=True), name="audit_pending"),
        ]

    def __str__(self) -> str:
        position = f"#{self.sequence}" if self.sequence is not None else f"(unsealed, id {self.pk})"
        return f"{position} {self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_display or '-'} {self.action}"

    @property
    def sealed(self) -> bool:
        return self.sequence is not None

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
