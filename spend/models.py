"""Budgets in money: how much a key, a user, a team or a model may spend per day, per month or
in total. Enforced at admission like token quotas (reserve the most a request can cost,
settle at what it cost: accounts.quotas), so concurrent requests never overspend."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from audit.bulk_guard import AuditedQuerySet

# The largest budget (the ledger counts 10^10 units to the currency unit in 64 bits).
MAX_BUDGET = Decimal(100_000_000)
BUDGET_DECIMAL_PLACES = 4
MIN_BUDGET = Decimal("0.0001")


class Budget(models.Model):
    """A cap on spend. Its subject is a user, a team (its members' spend together) or an API
    key; `model` narrows it to one model's spend, or alone caps everyone's spend on that model.
    Every budget that applies to a request is enforced; the first one short refuses it."""

    class Period(models.TextChoices):
        DAY = "day", "Per day"
        MONTH = "month", "Per month"
        TOTAL = "total", "In total"

    name = models.CharField(max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    model = models.ForeignKey(
        "inference.Model", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    period = models.CharField(max_length=8, choices=Period.choices)
    amount = models.DecimalField(
        max_digits=16,
        decimal_places=BUDGET_DECIMAL_PLACES,
        validators=[MinValueValidator(MIN_BUDGET), MaxValueValidator(MAX_BUDGET)],
        help_text="In the platform's currency (GATEHOUSE_CURRENCY).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        permissions = [("view_all_spend", "Can see everyone's spend and budgets")]
        constraints = [
            models.CheckConstraint(
                name="budget_one_subject_at_most",
                condition=~(
                    Q(user__isnull=False, team__isnull=False)
                    | Q(user__isnull=False, api_key__isnull=False)
                    | Q(team__isnull=False, api_key__isnull=False)
                ),
            ),
            models.CheckConstraint(
                name="budget_has_a_subject_or_model",
                condition=Q(user__isnull=False)
                | Q(team__isnull=False)
                | Q(api_key__isnull=False)
                | Q(model__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        subjects = [self.user_id, self.team_id, self.api_key_id]
        if sum(subject is not None for subject in subjects) > 1:
            raise ValidationError("A budget is for one user, one team or one API key (or none: a model's).")
        if all(subject is None for subject in subjects) and self.model_id is None:
            raise ValidationError("Say whose spend the budget caps: a user, a team, an API key or a model.")


class AlertWebhook(models.Model):
    """Where spend alerts are posted: a URL (through the outbound guard, at saving and at each
    call) and the name of the environment variable holding the key that signs each body."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    # GATEHOUSE_WEBHOOK_<NAME>: the signing key is never stored, only where it lives.
    secret_ref = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class SpendAlert(models.Model):
    """One alert, raised once: a budget past 80% or 100% in one window, or a team's day of spend
    past its multiple of the days before. The constraint is what makes it once."""

    class Kind(models.TextChoices):
        BUDGET_80 = "budget_80", "Budget 80% used"
        BUDGET_100 = "budget_100", "Budget used up"
        TEAM_SPIKE = "team_spike", "Team spend spike"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="spend_alerts"
    )
    # The budget's window (`20261206`, `202612`, `total`) or the team's day.
    window = models.CharField(max_length=16)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "budget", "window"], name="spend_alert_once_per_budget_window"
            ),
            models.UniqueConstraint(fields=["kind", "team", "window"], name="spend_alert_once_per_team_day"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.window}"


class WebhookDelivery(models.Model):
    """One alert's posting to one webhook, and how its tries went (the console's delivery log)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    alert = models.ForeignKey(SpendAlert, on_delete=models.CASCADE, related_name="deliveries")
    webhook = models.ForeignKey(AlertWebhook, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["alert", "webhook"], name="webhook_delivery_once_per_alert")
        ]

    def __str__(self) -> str:
        return f"{self.alert} to {self.webhook}: {self.status}"
