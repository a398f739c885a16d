"""What the spend and budget APIs take and give. Amounts are decimal text in the currency."""

from datetime import UTC, datetime, timedelta
from typing import Any

from rest_framework import serializers

from spend.models import BUDGET_DECIMAL_PLACES, MAX_BUDGET, MIN_BUDGET, Budget
from spend.selectors import GROUPINGS

# How far back a report looks when the caller does not say, and at most.
DEFAULT_REPORT_DAYS = 30
MAX_REPORT_DAYS = 366


class SpendQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    group_by = serializers.ChoiceField(choices=GROUPINGS, default="day")
    since = serializers.DateField(required=False, help_text="First day (UTC); 30 days ago by default.")
    until = serializers.DateField(required=False, help_text="Last day (UTC), included; today by default.")
    scope = serializers.ChoiceField(
        choices=["mine", "all"], default="mine", help_text="`all`: everyone's (admins and auditors)."
    )
    user = serializers.CharField(required=False, help_text="A username (admins and auditors).")
    team = serializers.CharField(required=False, help_text="A team's name.")
    key = serializers.IntegerField(required=False, min_value=1, help_text="An API key's id.")
    model = serializers.CharField(required=False, help_text="A model's name.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        today = datetime.now(tz=UTC).date()
        attrs["until"] = attrs.get("until") or today
        attrs["since"] = attrs.get("since") or attrs["until"] - timedelta(days=DEFAULT_REPORT_DAYS - 1)
        if attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"since": "Comes after `until`."})
        if (attrs["until"] - attrs["since"]).days >= MAX_REPORT_DAYS:
            raise serializers.ValidationError({"since": f"A report covers at most {MAX_REPORT_DAYS} days."})
        return attrs


class SpendTotalsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.CharField(help_text="Exact, in the currency.")


class SpendGroupSerializer(SpendTotalsSerializer):
    group = serializers.CharField(help_text="The day, model@version, team, username or key.")
    id = serializers.IntegerField(allow_null=True, help_text="The version's, team's, user's or key's id.")


class SpendReportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    currency = serializers.CharField()
    group_by = serializers.CharField()
    since = serializers.DateField()
    until = serializers.DateField()
    total = SpendTotalsSerializer()
    groups = SpendGroupSerializer(many=True)


class BudgetInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Whose spend a budget caps (one of user, team, api_key, or only a model), how much, when."""

    name = serializers.CharField(max_length=100)
    user = serializers.CharField(required=False, allow_null=True, default=None, help_text="A username.")
    team = serializers.CharField(required=False, allow_null=True, default=None, help_text="A team's name.")
    api_key = serializers.IntegerField(required=False, allow_null=True, default=None, help_text="A key's id.")
    model = serializers.CharField(
        required=False, allow_null=True, default=None, help_text="Only this model's spend (a model's name)."
    )
    period = serializers.ChoiceField(choices=Budget.Period.choices)
    amount = serializers.DecimalField(
        max_digits=16, decimal_places=BUDGET_DECIMAL_PLACES, min_value=MIN_BUDGET, max_value=MAX_BUDGET
    )


class BudgetChangeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """What may change on a budget: its name and amount (whose spend, and when, is a new budget)."""

    name = serializers.CharField(max_length=100, required=False)
    amount = serializers.DecimalField(
        max_digits=16,
        decimal_places=BUDGET_DECIMAL_PLACES,
        min_value=MIN_BUDGET,
        max_value=MAX_BUDGET,
        required=False,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = set(self.initial_data) if isinstance(self.initial_data, dict) else set()
        if unknown := sorted(given - set(self.fields)):
            raise serializers.ValidationError(
                dict.fromkeys(unknown, "This cannot be changed; make a new budget instead.")
            )
        if not attrs:
            raise serializers.ValidationError("Give a name or an amount.")
        return attrs


class BudgetOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    name = serializers.CharField()
    budget = serializers.CharField(help_text="How refusals name it.")
    user = serializers.CharField(allow_null=True)
    team = serializers.CharField(allow_null=True)
    api_key = serializers.IntegerField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    period = serializers.CharField()
    amount = serializers.CharField()
    used = serializers.CharField(help_text="This window's, running requests' reservations included.")
    remaining = serializers.CharField()
    currency = serializers.CharField()
    resets_at = serializers.DateTimeField(allow_null=True)
