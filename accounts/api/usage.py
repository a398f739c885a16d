"""`GET /api/usage/`: the caller's quota limits (used, left, reset) and usage totals."""

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_principal
from accounts.models import User
from accounts.quotas.ledger import LedgerUnavailable
from accounts.services.quotas import quota_standing
from accounts.services.usage import usage_totals


class QuotaLimitSerializer(serializers.Serializer):  # type: ignore[type-arg]
    limit = serializers.CharField(help_text="Which policy, e.g. 'your tokens per day'.")
    dimension = serializers.ChoiceField(choices=["requests", "tokens", "streams"])
    max = serializers.IntegerField()
    used = serializers.IntegerField(help_text="Including reservations of requests still running.")
    remaining = serializers.IntegerField()
    resets_at = serializers.DateTimeField(allow_null=True)


class UsageTotalsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    requests = serializers.IntegerField()
    failures = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()


class QuotaStandingSerializer(serializers.Serializer):  # type: ignore[type-arg]
    limits = QuotaLimitSerializer(many=True)
    today = UsageTotalsSerializer(help_text="From the daily rollups (refreshed every hour).")
    this_month = UsageTotalsSerializer(help_text="From the daily rollups (refreshed every hour).")


class UsageView(APIView):
    """The caller's own standing against every quota that applies to them (and to their key)."""

    required_scope = "usage:read"

    @extend_schema(responses={200: QuotaStandingSerializer})
    def get(self, request: Request) -> Response:
        user: User = request.user  # type: ignore[assignment]
        try:
            standing = quota_standing(user=user, api_key=request_principal(request).api_key)
        except LedgerUnavailable:
            return Response({"detail": "Usage cannot be read right now; try again shortly."}, status=503)
        for row in standing:
            resets_at = row["resets_at"]
            row["resets_at"] = (
                datetime.fromtimestamp(resets_at, tz=UTC) if isinstance(resets_at, float) else None
            )
        today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        body = {
            "limits": standing,
            "today": usage_totals(user_id=user.pk, since=today),
            "this_month": usage_totals(user_id=user.pk, since=today.replace(day=1)),
        }
        return Response(QuotaStandingSerializer(body).data)
