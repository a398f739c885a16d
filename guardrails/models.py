"""Guardrail policies: what is checked in what goes to a model and what comes back.

A policy applies to one model or to every model, and to everyone or to one team. For a
request, the policies of the requester's teams (on its model, or on every model) replace the
others: a team can be held tighter, or let through what its work needs. Where several apply,
the strictest of each wins (block over redact over allow; every deny list; the shortest limit).
"""

from django.core.exceptions import ValidationError
from django.db import models

from audit.bulk_guard import AuditedQuerySet
from guardrails.detectors import KINDS

ACTIONS = ("allow", "redact", "block")
MAX_DENY_ENTRIES = 200
MAX_PATTERN_LENGTH = 500


class GuardrailPolicy(models.Model):
    name = models.CharField(max_length=100)
    model = models.ForeignKey(
        "inference.Model",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="guardrail_policies",
        help_text="None: every model.",
    )
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="guardrail_policies",
        help_text="None: everyone; a team's policy replaces the others for its members.",
    )  # fmt: skip
    # kind (guardrails.detectors.KINDS) -> allow, redact or block; a kind left out is allowed.
    pii = models.JSONField(default=dict, blank=True)
    # Words or phrases (matched whole, ignoring case) and regular expressions that block a request.
    deny_terms = models.JSONField(default=list, blank=True)
    deny_patterns = models.JSONField(default=list, blank=True)
    max_prompt_chars = models.PositiveIntegerField(null=True, blank=True)
    # Redact the answer too (its found kinds, as they stream), not only the request.
    check_output = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AuditedQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        verbose_name_plural = "guardrail policies"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from guardrails.rules import pattern_compile

        if not isinstance(self.pii, dict):
            raise ValidationError({"pii": "Give a map of kind to action."})
        if unknown := sorted(set(self.pii) - set(KINDS)):
            raise ValidationError(
                {"pii": f"Unknown kinds: {', '.join(unknown)} (known: {', '.join(KINDS)})."}
            )
        if bad := sorted(kind for kind, action in self.pii.items() if action not in ACTIONS):
            raise ValidationError({"pii": f"{', '.join(bad)}: the action is one of {', '.join(ACTIONS)}."})
        for name in ("deny_terms", "deny_patterns"):
            entries = getattr(self, name)
            if not isinstance(entries, list) or not all(
                isinstance(entry, str) and entry.strip() for entry in entries
            ):
                raise ValidationError({name: "Give a list of non-empty texts."})
            if len(entries) > MAX_DENY_ENTRIES:
                raise ValidationError({name: f"At most {MAX_DENY_ENTRIES} entries."})
        for pattern in self.deny_patterns:
            if len(pattern) > MAX_PATTERN_LENGTH:
                raise ValidationError(
                    {"deny_patterns": f"A pattern is at most {MAX_PATTERN_LENGTH} characters."}
                )
            try:
                pattern_compile(pattern)
            except Exception as error:  # noqa: BLE001 - the regex module's errors, said to a person
                raise ValidationError(
                    {"deny_patterns": f"{pattern!r} is not a regular expression: {error}"}
                ) from None
