"""The model registry: governed models and their versions."""

import uuid
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from guardian.models import GroupObjectPermission, UserObjectPermission

from audit.bulk_guard import AuditedQuerySet
from encryption.fields import EncryptedTextField
from spend.money import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS, Prices

# The largest weight a deployment may have (weights are shares of a version's calls).
MAX_DEPLOYMENT_WEIGHT = 1000
# No model may allow more choices per request than this (a request's choices share its batch).
MAX_CHOICES_CEILING = 16
# How long a cached answer may be kept at most (a day).
MAX_RESPONSE_CACHE_SECONDS = 86_400
# How many models one model may fall back to.
MAX_FALLBACK_MODELS = 3


class Model(models.Model):
    """A name users ask for (`demo-tiny`); what answers is one of its versions."""

    class Kind(models.TextChoices):
        CHAT = "chat", "Chat (generates text)"
        EMBEDDING = "embedding", "Embedding (turns text into vectors)"

    class CacheCharge(models.TextChoices):
        FULL = "full", "Charged as if the model had answered"
        NONE = "none", "Not charged"

    class Routing(models.TextChoices):
        WEIGHTED = "weighted", "By weight"
        LEAST_BUSY = "least_busy", "To the deployment with the fewest calls in flight"

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # What it does: chats and text completions, or embeddings. Asked the other, it answers 400.
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHAT)
    # Open models are usable by every member; others need an object-level grant.
    open_to_all = models.BooleanField(default=False)
    # Generation limits: the cap a request may not exceed, the default when it names none, and
    # how long one generation may run.
    max_tokens_cap = models.PositiveIntegerField(default=512)
    default_max_tokens = models.PositiveIntegerField(default=64)
    wall_clock_limit_seconds = models.PositiveIntegerField(default=120)
    # The most choices one request may ask for (OpenAI's `n`); each is a generation of its own,
    # admitted, charged and recorded as one.
    max_choices = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(MAX_CHOICES_CEILING)]
    )
    # How a remote version's deployments share its calls: by weight, or to the one with the
    # fewest calls in flight (inference.engines.remote_deployments).
    routing = models.CharField(max_length=16, choices=Routing.choices, default=Routing.WEIGHTED)
    # Models tried in order when this one's versions cannot answer before any token, each
    # checked against the caller's access and quotas as if asked for (inference.chat.fallback).
    fallback_models = models.JSONField(default=list, blank=True, editable=False)
    # Opt-in exact-match answers (inference.chat.response_cache): a deterministic request
    # (temperature 0, or a seed) asked again within `response_cache_seconds` is answered from
    # the first answer, without calling the model, and charged by `response_cache_charge`.
    # Kept per team (per person without one) unless `response_cache_shared`.
    response_cache = models.BooleanField(default=False)
    response_cache_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1), MaxValueValidator(MAX_RESPONSE_CACHE_SECONDS)]
    )
    response_cache_charge = models.CharField(
        max_length=8, choices=CacheCharge.choices, default=CacheCharge.FULL
    )
    response_cache_shared = models.BooleanField(default=False)
    # An optional canary: a staging version that gets this percentage of conversations.
    canary_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    canary_weight = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)], editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [("use_model", "Can use the model for inference")]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", "Local transformers"
        OPENAI_COMPATIBLE = "openai_compatible", "Remote OpenAI-compatible"

    class ToolCallFormat(models.TextChoices):
        NONE = "", "None (no tool calling)"
        HERMES = "hermes", "Hermes / Qwen: <tool_call>{name, arguments}</tool_call>"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        STAGING = "staging", "Staging"
        PRODUCTION = "production", "Production"
        RETIRED = "retired", "Retired"

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="versions")
    label = models.CharField(max_length=64)
    backend = models.CharField(max_length=32, choices=Backend.choices, default=Backend.TRANSFORMERS)
    # transformers: a local Hugging Face model directory (absolute, or relative to
    # GATEHOUSE_MODEL_ROOT); a hub id is fetched into one at registration (inference.hub).
    # openai_compatible: unused.
    source = models.CharField(max_length=500, blank=True)
    # Versions fetched from a hub: where from, and the exact commit (the files are local).
    hub_repo = models.CharField(max_length=200, blank=True)
    hub_revision = models.CharField(max_length=64, blank=True)
    remote_base_url = models.URLField(blank=True)
    remote_model = models.CharField(max_length=200, blank=True)
    # The *name* of the setting or environment variable holding the remote API key; the key
    # itself is never stored here nor shown back.
    credential_ref = models.CharField(max_length=100, blank=True)
    # Pickle weights can run code when loaded; only an explicit opt-in allows them.
    allow_pickle_weights = models.BooleanField(default=False)
    # {relative file path: sha-256 hex}; verified before every load. Empty only for remote
    # versions, which have no files here (model_version_register refuses an empty one).
    manifest = models.JSONField(default=dict, blank=True)
    dtype = models.CharField(max_length=16, default="auto")
    context_length = models.PositiveIntegerField(default=2048)
    # How a local version's chat template offers tools and its output calls them; none: it has
    # no tool calling (tools are refused). Remote versions are passed tools as they are.
    tool_call_format = models.CharField(
        max_length=16, choices=ToolCallFormat.choices, default=ToolCallFormat.NONE, blank=True
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # What a million tokens cost, in the platform's currency (spend.money); none: free. Changed
    # only through `model_version_prices_update` (audited), from the next request on.
    input_price_per_million = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
    )
    output_price_per_million = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True, editable=False)
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["model__name", "-created_at"]
        # The lifecycle's steps that put a version in front of users, apart from editing it.
        permissions = [
            ("promote_modelversion", "Can promote a version to production or roll back"),
            ("canary_modelversion", "Can start and stop a canary"),
            ("retire_modelversion", "Can retire a version"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["model", "label"], name="model_version_label_unique"),
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(status="production"),
                name="model_one_production_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.label}"

    @property
    def prices(self) -> Prices:
        return Prices(
            input_per_million=self.input_price_per_million or Decimal(0),
            output_per_million=self.output_price_per_million or Decimal(0),
        )

    @property
    def source_path(self) -> Path:
        path = Path(self.source)
        return path if path.is_absolute() else Path(settings.GATEHOUSE_MODEL_ROOT) / path


class Deployment(models.Model):
    """One upstream serving a remote version: an OpenAI-compatible server, its model name there
    and the name of the variable holding its key. A remote version has one or more; each call
    goes to one of those whose circuit breaker lets it, picked by weight, and a failure before
    any answer moves on to the next (`inference.engines.remote_deployments`)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="deployments")
    base_url = models.URLField()
    remote_model = models.CharField(max_length=200)
    # The *name* of the GATEHOUSE_UPSTREAM_* variable holding its key; never the key.
    credential_ref = models.CharField(max_length=100, blank=True)
    # Its share of the version's calls, against the other deployments' weights.
    weight = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_DEPLOYMENT_WEIGHT)]
    )
    # What it may take, across every process (None: no limit): calls at once, and tokens a
    # minute (prompt and answer). A deployment at a limit is passed over for the next.
    max_concurrency = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["version", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "base_url", "remote_model"], name="deployment_upstream_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} via {self.base_url}"


class Conversation(models.Model):
    """A chat kept for its owner: websocket chats always, API chats when storage is on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="conversations")
    # The opening of the first user message (at most 100 characters), so a list is readable;
    # encrypted at rest like the messages.
    title = EncryptedTextField(blank=True, purpose="inference.conversation.title")
    channel = models.CharField(max_length=16, default="websocket")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return f"{self.title or self.pk} ({self.owner_id})"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = EncryptedTextField(blank=True, purpose="inference.message.content")
    # Assistant messages: which version answered, with what usage, and how it ended.
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class PersonModelGrant(UserObjectPermission):
    """A person's grant to use a model: guardian's own row, seen as a grant by the console."""

    class Meta:
        proxy = True
        verbose_name = "model access for a person"
        verbose_name_plural = "model access: people"

    def __str__(self) -> str:
        return f"{self.user} may use {self.content_object}"


class TeamModelGrant(GroupObjectPermission):
    """A team's grant to use a model (its group's guardian row), seen as a grant by the console."""

    class Meta:
        proxy = True
        verbose_name = "model access for a team"
        verbose_name_plural = "model access: teams"

    def __str__(self) -> str:
        return f"team {self.group.team} may use {self.content_object}"
