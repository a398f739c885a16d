"""Who signed in through which provider, and which provider groups give which roles and teams."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from accounts.models import Team
from accounts.roles import Role
from audit.bulk_guard import AuditedQuerySet
from sso.providers import oidc_providers


class ExternalIdentity(models.Model):
    """A person's account at an OpenID Connect provider: the provider's name and its `sub`.

    Created on the first sign-in (or by an admin linking an existing person). Unlinking it
    in the console stops that provider account from signing in as the person.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities"
    )
    provider = models.CharField(max_length=40)
    subject = models.CharField(max_length=255, help_text="The provider's `sub` claim: stable, never reused.")
    email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    objects = AuditedQuerySet.as_manager()
    AUDIT_EXEMPT_FIELDS = ("last_sign_in_at",)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "subject"], name="sso_identity_provider_subject"),
            models.UniqueConstraint(fields=["provider", "user"], name="sso_identity_provider_user"),
        ]
        verbose_name_plural = "external identities"

    def __str__(self) -> str:
        return f"{self.provider}:{self.subject}"


class GroupMapping(models.Model):
    """A value of a provider's groups claim that gives a role, a team, or both.

    Mapped roles and teams are the provider's to manage: at each sign-in a person gets those
    their groups map to and loses those mapped for groups they have left (their sessions end
    then). Roles and teams that no mapping of the provider names are left as they are.
    """

    provider = models.CharField(max_length=40)
    group = models.CharField(
        max_length=255, help_text="A value of the provider's groups claim, as it sends it."
    )
    role = models.CharField(
        max_length=40, choices=[(role.value, role.value.replace("_", " ")) for role in Role], blank=True
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "group"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "group", "role", "team"], name="sso_mapping_unique", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        gives = " and ".join(part for part in (self.role, self.team.name if self.team else "") if part)
        return f"{self.provider} group {self.group!r} → {gives}"

    def clean(self) -> None:
        if self.provider not in oidc_providers():
            names = ", ".join(sorted(oidc_providers())) or "none is configured"
            raise ValidationError({"provider": f"No provider is configured under this name ({names})."})
        if not self.role and self.team_id is None:
            raise ValidationError("A mapping gives a role, a team, or both.")
