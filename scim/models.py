"""SCIM's own rows: its bearer tokens, and which users and teams it provisioned.

Gatehouse's people and teams stay in `accounts`; a link row here marks one as provisioned
(and still managed) by SCIM and holds what SCIM needs beside it: the resource id SCIM clients
use, the identity provider's `externalId`, and a group's display name.
"""

import uuid

from django.conf import settings
from django.db import models

from accounts.models import Team
from audit.bulk_guard import AuditedQuerySet

# A SCIM token reads `scim_<prefix>_<secret>` (scim.tokens).
TOKEN_SCHEME = "scim_"  # noqa: S105 - the scheme of every token, not a secret


class ScimToken(models.Model):
    """The bearer credential of an identity provider's SCIM client. Only an HMAC of the secret
    is stored, like an API key's; the token is shown once, when it is made."""

    name = models.CharField(max_length=100)
    # Public part of the token, used to find the row without scanning hashes.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AuditedQuerySet.as_manager()
    # Written at most once a minute on use: bookkeeping, not a change to the token.
    AUDIT_EXEMPT_FIELDS = ("last_used_at",)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "SCIM token"

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_SCHEME}{self.prefix}_…)"

    @property
    def audit_display(self) -> str:
        """How audit records name this token when it acts."""
        return f"scim token {self.name} ({TOKEN_SCHEME}{self.prefix})"


class ScimUser(models.Model):
    """A user SCIM provisioned and still manages. Deprovisioning deletes this link only."""

    # The resource's SCIM id: never reused, and saying nothing about the user's row.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scim_link")
    external_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # meta.lastModified: every change made through SCIM.
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "SCIM-provisioned user"

    def __str__(self) -> str:
        return str(self.id)


class ScimGroup(models.Model):
    """A team SCIM provisioned and still manages.

    A team's name is a slug; the SCIM display name ("Data Science") is kept here, and the
    team is named after it (`data-science`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="scim_link")
    display_name = models.CharField(max_length=255)
    external_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "SCIM-provisioned group"

    def __str__(self) -> str:
        return self.display_name
