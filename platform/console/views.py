"""The console's dashboard and chat playground: thin views over selectors.

Both are served by the console site (`admin_site.ConsoleAdminSite.get_urls`), so they sit
behind the same login, staff check and second factor as the rest of the console.
"""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role, user_holds_role
from audit.selectors import audit_chain_status
from gatehouse.console import selectors, spend_charts
from inference.selectors import model_list_usable
from spend.money import currency

DASHBOARD_DAYS = (7, 14, 30, 90)
# The dashboard shows every person's and team's usage: staff status alone does not open it.
DASHBOARD_PERMISSION = "accounts.view_usage_dashboard"


_DAYS_SAID = ", ".join(str(days) for days in DASHBOARD_DAYS[:-1]) + f" or {DASHBOARD_DAYS[-1]}"


def _dashboard_days(text: str | None) -> int | None:
    """The period asked for: 14 when none is; None when it is not one of the choices.

    Compared as text, never converted first: `int()` refuses some strings `isdigit()` accepts
    (such as "²") and thousands of digits."""
    if text is None:
        return 14
    return next((days for days in DASHBOARD_DAYS if str(days) == text), None)


def dashboard(request: HttpRequest, *, context: dict[str, object]) -> HttpResponse:
    if not request.user.has_perm(DASHBOARD_PERMISSION):
        raise PermissionDenied(
            f"The dashboard shows everyone's usage; it needs the {DASHBOARD_PERMISSION} permission."
        )
    days = _dashboard_days(request.GET.get("days"))
    if days is None:
        return HttpResponseBadRequest(
            f"The period must be one of {_DAYS_SAID} days.", content_type="text/plain; charset=utf-8"
        )
    now = timezone.now()
    requests, tokens = selectors.usage_by_model_daily(now=now, days=days)
    users, teams = selectors.usage_top_people(now=now, days=days)
    user_tokens, team_tokens = selectors.usage_by_person_daily(now=now, days=days)
    user: User = request.user  # type: ignore[assignment]
    charts = {
        "requests": requests.as_dict(),
        "tokens": tokens.as_dict(),
        "team_tokens": team_tokens.as_dict(),
        "user_tokens": user_tokens.as_dict(),
        "latency": selectors.latency_daily(now=now, days=days).as_dict(),
        "failures": selectors.failures_daily(now=now, days=days).as_dict(),
        "spend_models": spend_charts.spend_by_model_daily(now=now, days=days).as_dict(),
        "spend_teams": spend_charts.spend_by_team_daily(now=now, days=days).as_dict(),
    }
    return TemplateResponse(
        request,
        "console/dashboard.html",
        {
            **context,
            "title": "Dashboard",
            "days": days,
            "day_choices": DASHBOARD_DAYS,
            "charts": charts,
            "users": users,
            "teams": teams,
            "latency": selectors.latency_percentiles(now=now, days=days),
            "canaries": selectors.canary_split(now=now),
            "budgets": spend_charts.budgets_used(),
            "currency": currency(),
            "chain": audit_chain_status() if user_holds_role(user, Role.ADMIN, Role.AUDITOR) else None,
        },
    )


def playground(request: HttpRequest, *, context: dict[str, object]) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    return TemplateResponse(
        request,
        "console/playground.html",
        {**context, "title": "Chat playground", "models": list(model_list_usable(user=user))},
    )
