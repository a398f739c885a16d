"""`GET /api/spend/`: exact sums of the usage records' costs, grouped and filtered; your own,
or everyone's for admins and auditors."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from accounts.models import ApiKey, Team, UsageRecord, User
from accounts.services import api_key_create, team_create, team_member_add
from inference.models import ModelVersion
from inference.services import model_register, model_version_register_remote
from tests.accounts.helpers import bearer_client, login

pytestmark = pytest.mark.django_db

NOW = datetime.now(tz=UTC).replace(hour=12, minute=0, second=0, microsecond=0)


class _Records:
    def __init__(self, alice: User, bob: User, carol: User) -> None:
        self.ml = team_create(name="ml", actor=alice)
        self.ops = team_create(name="ops", actor=alice)
        self.bobs_key, _ = api_key_create(user=bob, name="bobs", scopes=["chat"], actor=bob)
        self.chat = self._version(alice, "chat-model")
        self.code = self._version(alice, "code-model")
        # bob (ml and ops), today and yesterday; carol (no team) today.
        self._record(bob, self.chat, "0.1", key=self.bobs_key, teams=[self.ml, self.ops])
        self._record(bob, self.code, "0.2", teams=[self.ml, self.ops])
        self._record(bob, self.chat, "0.0000001", at=NOW - timedelta(days=1), teams=[self.ml])
        self._record(carol, self.chat, "1.0000000001")

    @staticmethod
    def _version(alice: User, name: str) -> ModelVersion:
        model = model_register(name=name, actor=alice)
        return model_version_register_remote(
            model=model, label="v1", base_url="http://127.0.0.1:9/v1", remote_model="m", actor=alice
        )

    @staticmethod
    def _record(
        user: User,
        version: ModelVersion,
        cost: str,
        *,
        key: ApiKey | None = None,
        at: datetime = NOW,
        teams: list[Team] | None = None,
    ) -> None:
        UsageRecord.objects.create(
            created_at=at,
            user_id=user.pk,
            api_key_id=key.pk if key else None,
            team_ids=[team.pk for team in teams or []],
            model_version_id=version.pk,
            channel="api",
            prompt_tokens=10,
            completion_tokens=5,
            cost=Decimal(cost),
            outcome="completed",
        )


@pytest.fixture
def records(alice: User, bob: User, carol: User) -> _Records:
    return _Records(alice, bob, carol)


def _report(caller: User, **query: Any) -> Any:
    return bearer_client(login(caller).access).get("/api/spend/", query)


def _groups(body: dict[str, Any]) -> dict[str, str]:
    return {group["group"]: group["cost"] for group in body["groups"]}


def test_a_member_sees_only_their_own_spend_summed_exactly(records: _Records, bob: User) -> None:
    body = _report(bob).json()
    assert body["currency"] == "USD"
    assert body["total"] == {"requests": 3, "prompt_tokens": 30, "completion_tokens": 15, "cost": "0.3000001"}
    today, yesterday = NOW.date().isoformat(), (NOW - timedelta(days=1)).date().isoformat()
    assert _groups(body) == {yesterday: "0.0000001", today: "0.30"}


def test_a_member_may_not_ask_for_everyone_or_someone_else(records: _Records, bob: User) -> None:
    assert _report(bob, scope="all").status_code == 403
    assert _report(bob, user="carol").status_code == 403
    assert _report(bob, user="bob").status_code == 200


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("model", {"chat-model@v1": "1.1000001001", "code-model@v1": "0.20"}),
        ("user", {"bob": "0.3000001", "carol": "1.0000000001"}),
        ("key", {}),
        ("team", {"ml": "0.3000001", "ops": "0.30", "(no team)": "1.0000000001"}),
    ],
)
def test_an_auditor_sees_everyone_grouped_each_way(
    records: _Records, carol: User, group_by: str, expected: dict[str, str | None]
) -> None:
    body = _report(carol, scope="all", group_by=group_by).json()
    assert body["total"]["cost"] == "1.3000001001"
    groups = _groups(body)
    if group_by == "key":
        (named,) = [name for name in groups if name.startswith("bobs (")]
        assert (groups[named], groups["(no key)"]) == ("0.10", "1.2000001001")
        return
    assert groups == expected


def test_filters_narrow_the_records_summed(records: _Records, alice: User) -> None:
    assert _report(alice, scope="all", model="code-model").json()["total"]["cost"] == "0.20"
    assert _report(alice, scope="all", team="ops").json()["total"]["cost"] == "0.30"
    assert _report(alice, scope="all", key=records.bobs_key.pk).json()["total"]["cost"] == "0.10"
    yesterday = (NOW - timedelta(days=1)).date().isoformat()
    only_yesterday = _report(alice, scope="all", since=yesterday, until=yesterday).json()
    assert only_yesterday["total"]["cost"] == "0.0000001"
    assert _report(alice).json()["total"]["requests"] == 0  # alice's own: she spent nothing


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "since"),
        ({"since": "2020-01-01", "until": "2026-01-01"}, "since"),
        ({"model": "nothing"}, "model"),
        ({"team": "nobody"}, "team"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(
    records: _Records, alice: User, query: dict[str, str], field: str
) -> None:
    answer = _report(alice, **query)
    assert answer.status_code == 400
    assert field in answer.json()


def test_an_api_key_needs_the_usage_scope(records: _Records, bob: User) -> None:
    _, chat_only = api_key_create(user=bob, name="chat", scopes=["chat"], actor=bob)
    _, reader = api_key_create(user=bob, name="reader", scopes=["usage:read"], actor=bob)
    assert bearer_client(chat_only).get("/api/spend/").status_code == 403
    assert bearer_client(reader).get("/api/spend/").json()["total"]["cost"] == "0.3000001"


def test_nothing_spent_is_an_empty_report(bob: User) -> None:
    body = _report(bob).json()
    assert body["total"] == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": "0.00"}
    assert body["groups"] == []


def test_a_member_cannot_tell_a_hidden_model_or_team_from_none(
    records: _Records, bob: User, carol: User
) -> None:
    from accounts.services import team_create

    team_create(name="secret-team", actor=User.objects.get(username="alice"))
    hidden, missing = _report(bob, model="chat-model"), _report(bob, model="no-such-model")
    assert (hidden.status_code, missing.status_code) == (400, 400)
    assert hidden.json()["model"] == "No model 'chat-model'."
    assert missing.json()["model"] == "No model 'no-such-model'."
    assert _report(bob, team="secret-team").json()["team"] == "No team 'secret-team'."
    team_member_add(team=records.ml, user=bob, actor=User.objects.get(username="alice"))
    assert _report(bob, team="ml").json()["total"]["cost"] == "0.3000001"  # his own team
    assert _report(carol, scope="all", model="chat-model").status_code == 200
