"""The console's dashboard and playground pages, server side: data, roles, no-JavaScript tables.

The browser drives them in tests/e2e/test_console_browser.py.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import UsageRecord, UsageRollup, User
from accounts.services import team_create, team_member_add
from accounts.services.usage import usage_rollup
from audit.checkpoints import audit_checkpoint_write
from inference.models import ModelVersion
from inference.services import model_register


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _usage(user: User, version: ModelVersion, *, tokens: int, outcome: str = "completed") -> None:
    UsageRecord.objects.create(
        created_at=timezone.now(), user_id=user.pk, model_version_id=version.pk, channel="api",
        prompt_tokens=tokens, completion_tokens=1, latency_ms=120.0, time_to_first_token_ms=15.0, outcome=outcome,
    )  # fmt: skip


def test_the_dashboard_charts_and_tables_show_the_rollups(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    _usage(bob, demo_version, tokens=10)
    _usage(bob, demo_version, tokens=20)
    _usage(alice, demo_version, tokens=5, outcome="failed")
    usage_rollup(period=UsageRollup.Period.DAY)
    response = _console(alice).get("/admin/dashboard/")
    assert response.status_code == 200
    page = response.content.decode()
    charts = json.loads(page.split('id="dashboard-charts" type="application/json">')[1].split("</script>")[0])
    today = datetime.now(tz=UTC).date().isoformat()
    assert charts["requests"]["labels"][-1] == today
    assert charts["requests"]["lines"]["demo-tiny"][-1] == 3
    assert charts["tokens"]["lines"]["demo-tiny"][-1] == 35 + 3
    assert charts["failures"]["lines"]["failed generations"][-1] == 1
    # The same figures as tables, for a page read without JavaScript.
    assert f"<td>{today}</td><td>3</td>" in page.replace("\n", "").replace("    ", "")
    assert 'data-chart="requests"' in page
    assert "chart-4.6.1.umd.min.js" in page
    users = [row["name"] for row in response.context["users"]]
    assert users == ["bob", "alice"]
    (latency,) = response.context["latency"]
    assert (latency["model"], latency["samples"], latency["latency_p50"], latency["ttft_p50"]) == (
        "demo-tiny",
        3,
        120.0,
        15.0,
    )


def test_the_chain_status_is_for_auditors_and_admins(alice: User, olga: User) -> None:
    model_register(name="something-audited", actor=alice)
    audit_checkpoint_write()
    page = _console(alice).get("/admin/dashboard/").content.decode()
    assert 'id="audit-chain"' in page
    assert "matches the trail" in page
    assert 'id="audit-chain"' not in _console(olga).get("/admin/dashboard/").content.decode()


def test_the_period_defaults_to_two_weeks(alice: User) -> None:
    response = _console(alice).get("/admin/dashboard/")
    assert response.status_code == 200
    assert response.context["days"] == 14
    assert len(response.context["charts"]["requests"]["labels"]) == 14
    assert _console(alice).get("/admin/dashboard/?days=30").context["days"] == 30


@pytest.mark.parametrize("days", ["banana", "²", "9" * 5000, "5", "-7", ""])
def test_a_strange_period_is_a_400_naming_the_choices(alice: User, days: str) -> None:
    response = _console(alice).get("/admin/dashboard/", {"days": days})
    assert response.status_code == 400
    assert "The period must be one of 7, 14, 30 or 90 days." in response.content.decode()


def test_the_playground_offers_the_models_one_may_use(
    alice: User, olga: User, demo_version: ModelVersion
) -> None:
    model_register(name="closed-model", actor=alice)
    admin_page = _console(alice).get("/admin/playground/").content.decode()
    assert '<option value="demo-tiny">' in admin_page
    assert '<option value="closed-model">' in admin_page
    officer_page = _console(olga).get("/admin/playground/").content.decode()
    assert '<option value="closed-model">' not in officer_page


def test_console_pages_need_the_console(bob: User) -> None:
    for page in ("/admin/dashboard/", "/admin/playground/"):
        assert Client().get(page).status_code == 302
        assert _console(bob).get(page).status_code == 302  # a member is not staff


def test_old_rollups_fall_out_of_the_window(alice: User, bob: User, demo_version: ModelVersion) -> None:
    UsageRollup.objects.create(
        period="day", period_start=datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=40),
        user_id=bob.pk, model_version_id=demo_version.pk, channel="api", requests=9,
    )  # fmt: skip
    charts = _console(alice).get("/admin/dashboard/").context["charts"]
    assert sum(charts["requests"]["lines"].get("demo-tiny", [0])) == 0


def test_the_audit_browser_shows_the_chain_state_above_filtered_events(alice: User) -> None:
    model_register(name="browsed-model", actor=alice)
    audit_checkpoint_write()
    page = _console(alice).get("/admin/audit/auditevent/?action=model.registered").content.decode()
    assert 'id="audit-chain"' in page
    assert "matches the trail" in page
    assert "browsed-model" in page
    listed = page.split('id="result_list"')[1].split("</table>")[0]
    assert "model.registered" in listed
    assert "user.created" not in listed


def test_team_totals_add_up_their_members_usage(alice: User, bob: User, demo_version: ModelVersion) -> None:
    team_member_add(team=team_create(name="research", actor=alice), user=bob, actor=alice)
    team_create(name="idle", actor=alice)
    _usage(bob, demo_version, tokens=10)
    _usage(alice, demo_version, tokens=99)
    usage_rollup(period=UsageRollup.Period.DAY)
    teams = _console(alice).get("/admin/dashboard/").context["teams"]
    assert teams == [
        {"name": "research", "requests": 1, "tokens": 11},
        {"name": "idle", "requests": 0, "tokens": 0},
    ]


def test_tokens_over_time_by_team_and_user(alice: User, bob: User, demo_version: ModelVersion) -> None:
    team_member_add(team=team_create(name="research", actor=alice), user=bob, actor=alice)
    _usage(bob, demo_version, tokens=10)
    _usage(alice, demo_version, tokens=99)
    usage_rollup(period=UsageRollup.Period.DAY)
    yesterday = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    UsageRollup.objects.create(
        period="day", period_start=yesterday, user_id=bob.pk, model_version_id=demo_version.pk,
        channel="api", requests=2, prompt_tokens=40, completion_tokens=2,
    )  # fmt: skip
    charts = _console(alice).get("/admin/dashboard/?days=7").context["charts"]
    assert charts["user_tokens"]["lines"]["bob"][-2:] == [42, 11]
    assert charts["user_tokens"]["lines"]["alice"][-2:] == [0, 100]
    assert charts["team_tokens"]["lines"] == {"research": [0, 0, 0, 0, 0, 42, 11]}


def test_the_user_chart_keeps_the_top_five_and_sums_the_rest(alice: User, demo_version: ModelVersion) -> None:
    people = [User.objects.create_user(username=f"user{rank}") for rank in range(7)]
    for rank, person in enumerate(people):
        _usage(person, demo_version, tokens=100 * (rank + 1))
    usage_rollup(period=UsageRollup.Period.DAY)
    lines = _console(alice).get("/admin/dashboard/").context["charts"]["user_tokens"]["lines"]
    assert list(lines) == ["user6", "user5", "user4", "user3", "user2", "others"]
    assert lines["others"][-1] == (100 + 1) + (200 + 1)


def test_latency_percentiles_per_day_leave_quiet_days_blank(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    for latency in (100.0, 200.0, 300.0, 400.0):
        UsageRecord.objects.create(
            created_at=timezone.now(), user_id=bob.pk, model_version_id=demo_version.pk, channel="ws",
            prompt_tokens=1, completion_tokens=1, latency_ms=latency, time_to_first_token_ms=latency / 10,
            outcome="completed",
        )  # fmt: skip
    response = _console(alice).get("/admin/dashboard/?days=7")
    lines = response.context["charts"]["latency"]["lines"]
    assert lines["latency p50"] == [None] * 6 + [250.0]
    assert lines["first token p50"][-1] == 25.0
    assert lines["latency p95"][-1] == 385.0
    # A day without requests is a gap in the chart and a dash in the table.
    assert "<td>-</td>" in response.content.decode()


def _nav(user: User) -> list[str]:
    page = _console(user).get("/admin/").content.decode()
    nav = page.split('<nav class="console-nav"')[1].split("</nav>")[0]
    return [link.split("</a>")[0].split(">")[-1] for link in nav.split("<a ")[1:]]


def test_the_menu_follows_the_role(alice: User, olga: User, carol: User) -> None:
    from accounts.roles import Role
    from accounts.services import user_create

    mia = user_create(
        username="mia", password="a-long-password-42", roles=[Role.MODEL_MANAGER], is_staff=True
    )
    carol.is_staff = True
    carol.save(update_fields=["is_staff"])
    everything = ["Dashboard", "Chat playground", "Users", "Single sign-on", "SCIM tokens", "API keys", "Quotas",
                  "Models", "Model access", "Audit trail", "Compliance queue"]  # fmt: skip
    assert _nav(alice) == everything
    # The dashboard shows everyone's usage: only for roles allowed to see it (admin, auditor).
    assert _nav(mia) == ["Chat playground", "Models", "Model access"]
    assert _nav(carol) == ["Dashboard", "Chat playground", "Audit trail"]
    assert _nav(olga) == ["Chat playground", "Users", "Audit trail", "Compliance queue"]
    # The index lists the same apps: the auditor sees no model pages there either.
    assert "/admin/inference/" not in _console(carol).get("/admin/").content.decode()


def test_the_dashboard_is_for_those_who_may_see_everyones_usage(
    alice: User, carol: User, olga: User, bob: User, demo_version: ModelVersion
) -> None:
    from accounts.roles import Role
    from accounts.services import user_create

    _usage(bob, demo_version, tokens=42)
    usage_rollup(period=UsageRollup.Period.DAY)
    mia = user_create(
        username="mia", password="a-long-password-42", roles=[Role.MODEL_MANAGER], is_staff=True
    )
    carol.is_staff = True
    carol.save(update_fields=["is_staff"])
    for refused in (mia, olga):
        response = _console(refused).get("/admin/dashboard/")
        assert response.status_code == 403, refused.username
        assert "bob" not in response.content.decode()
    for allowed in (alice, carol):
        response = _console(allowed).get("/admin/dashboard/")
        assert response.status_code == 200, allowed.username
        assert "bob" in response.content.decode()


def test_the_dashboard_charts_spend_by_model_and_team_and_shows_each_budgets_use(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    from decimal import Decimal

    from accounts.services import team_create, team_member_add
    from spend.models import Budget
    from spend.services import budget_save

    team = team_create(name="ml", actor=alice)
    team_member_add(team=team, user=bob, actor=alice)
    for cost in ("0.25", "0.0001"):
        UsageRecord.objects.create(
            created_at=timezone.now(), user_id=bob.pk, team_ids=[team.pk], model_version_id=demo_version.pk,
            channel="api", cost=Decimal(cost), outcome="completed",
        )  # fmt: skip
    usage_rollup(period=UsageRollup.Period.DAY)
    budget_save(budget=Budget(name="ml monthly", team=team, period="month", amount=Decimal(100)), actor=alice)
    response = _console(alice).get("/admin/dashboard/")
    page = response.content.decode()
    charts = json.loads(page.split('id="dashboard-charts" type="application/json">')[1].split("</script>")[0])
    assert charts["spend_models"]["lines"]["demo-tiny"][-1] == 0.2501
    assert charts["spend_teams"]["lines"]["ml"][-1] == 0.2501
    assert "<td>0.2501</td>" in page  # the figures' table keeps four places
    (budget,) = response.context["budgets"]
    assert (budget["budget"], budget["used"], budget["amount"]) == (
        "budget 'ml monthly' (team 'ml' spend per month, USD 100.00)",
        "0.00",
        "100.00",
    )
    assert "budget &#x27;ml monthly&#x27;" in page
