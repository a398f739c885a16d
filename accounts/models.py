import hmac
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser, Group, UserManager
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django_otp.models import Device, DeviceManager

from accounts.recovery_codes import recovery_code_candidates
from accounts.roles import Role
from audit.bulk_guard import AuditedQuerySet
from spend.money import COST_DECIMAL_PLACES, COST_MAX_DIGITS


class GatehouseUserManager(UserManager.from_queryset(AuditedQuerySet)):  # type: ignore[misc]
    """Django's user manager whose bulk writes are audited (see `audit.bulk_guard`)."""


class User(AbstractUser):
    """Gatehouse's user, custom from the first migration so identity can grow in place.

    Roles and teams are Django groups (see `accounts.roles` and `Team`).
    """

    # Tokens issued before this instant are refused: logout-all and deactivation set it.
    tokens_valid_after = models.DateTimeField(null=True, blank=True)

    objects = GatehouseUserManager()  # type: ignore[misc]
    AUDIT_EXEMPT_FIELDS = ("last_login",)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    # True while check_password re-hashes a correct password under a newer hasher: the same
    # password, stored afresh, is no password change.
    _password_rehashing = False

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; a replaced password hash ends every session signed in with the old password.

        Detected here, against the stored hash, so every way of setting a password (the
        console's forms, `manage.py changepassword`, `set_password` and `save` anywhere) ends
        sessions alike (accounts.services.users.user_password_change_apply).
        """
        if not self._password_replaced(update_fields=kwargs.get("update_fields")):
            super().save(*args, **kwargs)
            return
        from accounts.services.users import user_password_change_apply  # the services import models

        with transaction.atomic():
            super().save(*args, **kwargs)
            user_password_change_apply(user=self)

    def _password_replaced(self, *, update_fields: Iterable[str] | None) -> bool:
        if self._state.adding or self.pk is None or self._password_rehashing:
            return False
        if update_fields is not None and "password" not in update_fields:
            return False
        stored = type(self)._default_manager.filter(pk=self.pk).values_list("password", flat=True).first()
        return stored is not None and stored != self.password

    def check_password(self, raw_password: str | None) -> bool:
        self._password_rehashing = True
        try:
            return super().check_password(raw_password)
        finally:
            self._password_rehashing = False

    async def acheck_password(self, raw_password: str | None) -> bool:
        self._password_rehashing = True
        try:
            return await super().acheck_password(raw_password)
        finally:
            self._password_rehashing = False


class Team(models.Model):
    """A set of users that share model grants. A user can be in several teams.

    Backed by its own Django group, so django-guardian's group object permissions carry
    a team's grants; membership is the group's membership.
    """

    name = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="team", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A long-lived credential: `gk_<prefix>_<secret>`. Only an HMAC of the secret is stored."""

    class Scope(models.TextChoices):
        CHAT = "chat", "Chat completions"
        MODELS_READ = "models:read", "List models"
        # Drives the model registry (/api/models/) for a model manager's or admin's scripts.
        MODELS_WRITE = "models:write", "Manage the model registry"
        USAGE_READ = "usage:read", "Read usage"
        # Lets an auditor's or admin's key pull the trail (a SIEM, say); useless to anyone else.
        AUDIT_READ = "audit:read", "Read the audit trail"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # Public part of the key, used to find the row without scanning hashes.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    # CIDR ranges the key may be used from; empty means anywhere.
    allowed_networks = models.JSONField(default=list, blank=True)
    # The models the key may use (their ids), among its owner's; empty: every one its owner may.
    model_ids = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditedQuerySet.as_manager()
    # Written at most once a minute on use: bookkeeping, not a change to the key.
    AUDIT_EXEMPT_FIELDS = ("last_used_at",)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (gk_{self.prefix}_…)"


class RefreshFamily(models.Model):
    """One login session: every refresh token rotated from one login shares a family.

    Reusing a spent refresh token revokes the family, which kills the thief's and the
    owner's tokens alike (the owner logs in again; the thief cannot).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="refresh_families"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        verbose_name_plural = "refresh families"
        indexes = [models.Index(fields=["user", "revoked_at"], name="refresh_family_user_open")]

    def __str__(self) -> str:
        return f"session {self.id} of {self.user_id}"


class QuotaCounter(models.Model):
    """One quota counter of the SQL ledger (accounts.quotas.sql_ledger); its key names its window."""

    key = models.CharField(max_length=200, unique=True)
    used = models.BigIntegerField(default=0)
    # The end of the counter's window: rows past it are only history, and may be swept.
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key}={self.used}"


class QuotaLease(models.Model):
    """An unsettled reservation on one counter; given back by whoever finds it expired."""

    reservation_id = models.CharField(max_length=32)
    counter = models.ForeignKey(QuotaCounter, on_delete=models.CASCADE, related_name="leases")
    amount = models.BigIntegerField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reservation_id", "counter"], name="quota_lease_once_per_counter")
        ]
        indexes = [models.Index(fields=["counter", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.reservation_id}:{self.amount}"


class QuotaPolicy(models.Model):
    """Limits for one user, team, API key, or everyone holding a role (a role's default).

    Every policy that applies is enforced at once, each on its own counter: a team's daily
    tokens are shared by its members, a user's are their own. So the tightest one wins, and
    a refusal names the policy that hit. An empty limit means none.
    """

    name = models.CharField(max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="quota_policies",
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="quota_policies"
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="quota_policies"
    )
    role = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="quota_policies",
        help_text="A role's default: applies to each holder of the role, per user.",
    )  # fmt: skip
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    concurrent_streams = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "quota policies"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="quota_policy_one_subject",
                condition=(
                    models.Q(user__isnull=False, team__isnull=True, api_key__isnull=True, role__isnull=True)
                    | models.Q(user__isnull=True, team__isnull=False, api_key__isnull=True, role__isnull=True)
                    | models.Q(user__isnull=True, team__isnull=True, api_key__isnull=False, role__isnull=True)
                    | models.Q(user__isnull=True, team__isnull=True, api_key__isnull=True, role__isnull=False)
                ),
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        subjects = [self.user_id, self.team_id, self.api_key_id, self.role_id]
        if sum(subject is not None for subject in subjects) != 1:
            raise ValidationError("A policy applies to exactly one of: a user, a team, an API key, a role.")
        limits = [
            self.requests_per_minute,
            self.tokens_per_day,
            self.tokens_per_month,
            self.concurrent_streams,
        ]
        if all(limit is None for limit in limits):
            raise ValidationError("Set at least one limit.")


class UsageRecord(models.Model):
    """One request's usage: who, through which key, on which version, how much, how it went.

    Written in bulk, off the request's path (accounts.services.usage). A log, so it keeps
    ids rather than foreign keys: records outlive the users, keys and versions they name,
    and a bulk write never fails on a row whose user was deleted meanwhile.
    """

    class Outcome(models.TextChoices):
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    created_at = models.DateTimeField(db_index=True)
    user_id = models.BigIntegerField(db_index=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    # The user's teams when the record was written, seconds after the request (reports group
    # by them).
    team_ids = models.JSONField(default=list)
    model_version_id = models.BigIntegerField(null=True, blank=True)
    channel = models.CharField(max_length=16)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # What was charged for it at its version's prices then, exactly (spend.money).
    cost = models.DecimalField(max_digits=COST_MAX_DIGITS, decimal_places=COST_DECIMAL_PLACES, default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user_id", "created_at"])]

    def __str__(self) -> str:
        return f"{self.user_id} {self.outcome} {self.prompt_tokens}+{self.completion_tokens}"


class UsageRollup(models.Model):
    """Usage records summed per hour or day, per user, model version and channel."""

    class Period(models.TextChoices):
        HOUR = "hour", "Hour"
        DAY = "day", "Day"

    period = models.CharField(max_length=8, choices=Period.choices)
    period_start = models.DateTimeField()
    user_id = models.BigIntegerField()
    model_version_id = models.BigIntegerField(null=True, blank=True)
    channel = models.CharField(max_length=16)
    requests = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=COST_MAX_DIGITS, decimal_places=COST_DECIMAL_PLACES, default=0)

    class Meta:
        # The console dashboard charts everyone's usage from these rows.
        permissions = [("view_usage_dashboard", "Can see everyone's usage on the console dashboard")]
        constraints = [
            models.UniqueConstraint(
                fields=["period", "period_start", "user_id", "model_version_id", "channel"],
                name="usage_rollup_one_row_per_group",
            )
        ]
        indexes = [models.Index(fields=["user_id", "period", "period_start"])]

    def __str__(self) -> str:
        return f"{self.period} {self.period_start:%Y-%m-%d %H:00} user {self.user_id}"


class RecoveryCodeDevice(Device):  # type: ignore[misc]  # django-otp is untyped
    """A person's recovery codes, as a django-otp device: each unused code's hash, good once.

    One per person, made when an authenticator is confirmed and replaced whole when the
    codes are regenerated (accounts.services.two_factor). Being a django-otp device, the
    login policy's `two_factor_verify` finds it like an authenticator; a code is checked by
    its hash (accounts.recovery_codes) and struck off the list in the same transaction,
    under a row lock, so two logins racing with one code cannot both pass. The codes are
    about 49 random bits each and every failed login counts toward the lockout, so they
    need no throttle of their own.
    """

    # One set per person (django-otp's own field, made one-to-one).
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="recovery_codes",
        help_text="The user that this device belongs to.",
    )
    code_hashes = models.JSONField(default=list, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeviceManager.from_queryset(AuditedQuerySet)()

    class Meta:
        verbose_name = "recovery codes"
        verbose_name_plural = "recovery codes"

    @property
    def remaining(self) -> int:
        return len(self.code_hashes)

    def verify_token(self, token: str) -> bool:
        """Whether `token` is one of the unused codes; a code that matches is used up."""
        candidates = recovery_code_candidates(token)
        if not candidates:
            return False
        with transaction.atomic():
            locked = type(self).objects.select_for_update().filter(pk=self.pk).first()
            if locked is None:
                return False
            unused = [
                stored
                for stored in locked.code_hashes
                if not any(hmac.compare_digest(stored, candidate) for candidate in candidates)
            ]
            if len(unused) == len(locked.code_hashes):
                return False
            locked.code_hashes = unused
            locked.save(update_fields=["code_hashes"])
        self.code_hashes = unused
        return True


class TwoFactorRolePolicy(models.Model):
    """Whether everyone holding a role must have a second factor to log in.

    Read by `accounts.two_factor.two_factor_required`, beside GATEHOUSE_ADMIN_2FA_REQUIRED
    (which still covers admins); someone holding several roles must have one if any of
    them requires it. Edited in the console, audited (accounts.services.two_factor).
    """

    role = models.OneToOneField(
        Group,
        on_delete=models.CASCADE,
        related_name="two_factor_policy",
        limit_choices_to={"name__in": [role.value for role in Role]},
    )
    required = models.BooleanField(
        default=True, help_text="Holders of this role must enrol a second factor before they can log in."
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        verbose_name = "second-factor requirement"
        ordering = ["role__name"]

    def __str__(self) -> str:
        return f"{self.role.name}: {'required' if self.required else 'not required'}"

    def clean(self) -> None:
        if self.role_id is not None and self.role.name not in {role.value for role in Role}:
            raise ValidationError({"role": "Choose one of the roles, not a team."})
