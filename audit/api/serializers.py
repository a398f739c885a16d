from rest_framework import serializers

from audit.models import AuditEvent
from audit.selectors import AuditEventFilter

# The largest sequence number the trail's column holds (a signed 64-bit integer).
SEQUENCE_MAX = 2**63 - 1


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    metadata = serializers.JSONField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = (
            "sequence",
            "uuid",
            "occurred_at",
            "actor_pseudonym",
            "actor_display",
            "actor_kind",
            "action",
            "target_type",
            "target_id",
            "target_pseudonym",
            "target_display",
            "request_id",
            "client_ip",
            "user_agent",
            "outcome",
            "metadata",
            "hash",
        )
        read_only_fields = fields


class AuditEventFilterSerializer(serializers.Serializer[AuditEventFilter]):
    """The query string of `GET /api/audit/events/`; unknown parameters are refused."""

    action = serializers.CharField(
        required=False, max_length=100, help_text='A verb such as "auth.login.failed", or a family: "auth."'
    )
    actor = serializers.CharField(required=False, max_length=255, help_text="Pseudonym or username.")
    actor_kind = serializers.ChoiceField(choices=AuditEvent.ActorKind.choices, required=False)
    target_type = serializers.CharField(required=False, max_length=100, help_text='e.g. "accounts.apikey"')
    target_id = serializers.CharField(required=False, max_length=100)
    outcome = serializers.ChoiceField(choices=AuditEvent.Outcome.choices, required=False)
    request_id = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    sequence_from = serializers.IntegerField(required=False, min_value=1, max_value=SEQUENCE_MAX)
    sequence_to = serializers.IntegerField(required=False, min_value=1, max_value=SEQUENCE_MAX)

    def to_filter(self) -> AuditEventFilter:
        return AuditEventFilter(**self.validated_data)


class AuditExportQuerySerializer(serializers.Serializer[None]):
    # Not "format": DRF reads that parameter for content negotiation.
    export_format = serializers.ChoiceField(choices=["jsonl", "csv"], default="jsonl")
    sequence_from = serializers.IntegerField(min_value=1, max_value=SEQUENCE_MAX, default=1)
    sequence_to = serializers.IntegerField(
        min_value=1,
        max_value=SEQUENCE_MAX,
        required=False,
        help_text="Default: the newest event (within the export limit).",
    )
