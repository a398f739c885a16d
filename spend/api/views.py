"""`GET /api/spend/` and `/api/budgets/`: what was spent, and the budgets that cap it.

Everyone sees their own spend and the budgets they are held to; admins and auditors
(`spend.view_all_spend`) everyone's. Admins set budgets on anyone; a member may set one on
their own API key (it can only narrow what the key may spend). Writes need a login, not a key.
"""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import HasScope, InteractiveLoginOnly
from accounts.models import ApiKey, Team, User
from accounts.quotas.ledger import LedgerUnavailable
from inference.models import Model
from inference.selectors import model_list_usable
from spend.api.serializers import (
    BudgetChangeSerializer,
    BudgetInputSerializer,
    BudgetOutputSerializer,
    SpendQuerySerializer,
    SpendReportSerializer,
)
from spend.models import Budget
from spend.selectors import SpendFilter, budget_standing, budgets_visible, spend_report
from spend.services import budget_delete, budget_save

VIEW_ALL = "spend.view_all_spend"
_OWN_KEYS_ONLY = "Only admins set budgets, but on your own API keys."


def _caller(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - IsAuthenticated ran first
    return user


def _sees_everyone(user: User) -> bool:
    return bool(user.has_perm(VIEW_ALL))


class SpendView(APIView):
    """Spend in money, exact, grouped by day, model, team, user or key, with filters. Your own,
    or (admins and auditors, `scope=all`) everyone's."""

    required_scope = "usage:read"

    @extend_schema(parameters=[SpendQuerySerializer], responses={200: SpendReportSerializer})
    def get(self, request: Request) -> Response:
        query = SpendQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        user = _caller(request)
        everyone = _sees_everyone(user)
        if not everyone and (data["scope"] == "all" or data.get("user") not in (None, user.username)):
            raise PermissionDenied("Only admins and auditors may see other people's spend.")
        whose: int | None
        if not everyone:
            whose = user.pk
        elif "user" in data:
            whose = _found(User.objects.all(), "user", username=data["user"]).pk
        else:
            whose = None if data["scope"] == "all" else user.pk
        # Names are looked up among what the caller may see: the answer never tells a member
        # that a model or team they cannot see exists.
        models = Model.objects.all() if everyone else model_list_usable(user=user)
        teams = Team.objects.all() if everyone else Team.objects.filter(group__user=user)
        filters = SpendFilter(
            since=data["since"],
            until=data["until"],
            user_id=whose,
            team_id=_found(teams, "team", name=data["team"]).pk if "team" in data else None,
            api_key_id=data.get("key"),
            model_id=_found(models, "model", name=data["model"]).pk if "model" in data else None,
        )
        return Response(SpendReportSerializer(spend_report(group_by=data["group_by"], filters=filters)).data)


def _found(among: "QuerySet[Any]", field: str, **lookup: Any) -> Any:
    """The one object `lookup` finds `among`, or a 400 on `field` saying there is none."""
    found = among.filter(**lookup).first()
    if found is None:
        what = field.replace("_", " ")
        raise ValidationError({field: f"No {what} {next(iter(lookup.values()))!r}."})
    return found


class _BudgetView(APIView):
    @property
    def required_scope(self) -> str | None:
        return "usage:read" if self.request.method in SAFE_METHODS else None

    def get_permissions(self) -> list[Any]:
        if self.request.method in SAFE_METHODS:
            return [IsAuthenticated(), HasScope()]
        return [IsAuthenticated(), InteractiveLoginOnly()]


def _standing(budgets: Any) -> Response | list[dict[str, Any]]:
    try:
        return budget_standing(budgets=budgets)
    except LedgerUnavailable:
        return Response({"detail": "Budgets cannot be read right now; try again shortly."}, status=503)


def _may_write(user: User, budget: Budget, permission: str) -> bool:
    """Admins (the permission); a member for a budget on their own key, and nothing else."""
    if user.has_perm(permission):
        return True
    return (
        budget.api_key_id is not None
        and budget.api_key is not None
        and budget.api_key.user_id == user.pk
        and budget.user_id is None
        and budget.team_id is None
    )


class BudgetListView(_BudgetView):
    """The budgets you are held to (admins and auditors: all), each with this window's use; or
    set a new one."""

    @extend_schema(responses={200: BudgetOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        user = _caller(request)
        standing = _standing(budgets_visible(user=user, everyone=_sees_everyone(user)))
        if isinstance(standing, Response):
            return standing
        return Response(BudgetOutputSerializer(standing, many=True).data)

    @extend_schema(request=BudgetInputSerializer, responses={201: BudgetOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = BudgetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = _caller(request)
        admin = user.has_perm("spend.add_budget")
        # A member's budget is on a key of theirs: refused before any name is looked up, and
        # looked up among their own keys and models, so no answer tells what else exists.
        if not admin and (data["user"] or data["team"] or not data["api_key"]):
            raise PermissionDenied(_OWN_KEYS_ONLY)
        keys = ApiKey.objects.all() if admin else ApiKey.objects.filter(user=user)
        models = Model.objects.all() if admin else model_list_usable(user=user)
        budget = Budget(
            name=data["name"],
            user=_found(User.objects.all(), "user", username=data["user"]) if data["user"] else None,
            team=_found(Team.objects.all(), "team", name=data["team"]) if data["team"] else None,
            api_key=_found(keys, "api_key", pk=data["api_key"]) if data["api_key"] else None,
            model=_found(models, "model", name=data["model"]) if data["model"] else None,
            period=data["period"],
            amount=data["amount"],
        )
        if not _may_write(user, budget, "spend.add_budget"):
            raise PermissionDenied(_OWN_KEYS_ONLY)
        budget_save(budget=budget, actor=user)
        return _budget_answer(budget, created=True)


def _budget_answer(budget: Budget, *, created: bool = False) -> Response:
    standing = _standing([budget])
    if isinstance(standing, Response):
        return standing
    body = BudgetOutputSerializer(standing[0]).data
    return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class BudgetDetailView(_BudgetView):
    """One budget you may see; change its name or amount, or remove it."""

    def _visible(self, budget_id: int) -> Budget:
        user = _caller(self.request)
        budget = budgets_visible(user=user, everyone=_sees_everyone(user)).filter(pk=budget_id).first()
        if budget is None:
            raise NotFound("No such budget.")
        return budget

    @extend_schema(responses={200: BudgetOutputSerializer})
    def get(self, request: Request, budget_id: int) -> Response:
        return _budget_answer(self._visible(budget_id))

    @extend_schema(request=BudgetChangeSerializer, responses={200: BudgetOutputSerializer})
    def patch(self, request: Request, budget_id: int) -> Response:
        budget = self._visible(budget_id)
        user = _caller(request)
        if not _may_write(user, budget, "spend.change_budget"):
            raise PermissionDenied("Only admins change this budget.")
        serializer = BudgetChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        for name, value in serializer.validated_data.items():
            setattr(budget, name, value)
        budget_save(budget=budget, actor=user)
        return _budget_answer(budget)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, budget_id: int) -> Response:
        budget = self._visible(budget_id)
        user = _caller(request)
        if not _may_write(user, budget, "spend.delete_budget"):
            raise PermissionDenied("Only admins remove this budget.")
        budget_delete(budget=budget, actor=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
