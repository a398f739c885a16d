"""Hypothesis state machines: random sequences of grants, revokes, team moves and quota
operations, after each of which the API must agree with a plain-Python model of the rules.

Access: a member may use a model that is open to all, granted to them, or granted to a team
they are in; `/v1/models` lists exactly those and `/v1/models/<name>` answers 404 for the
rest. Quota: reservations, settlements and releases against a daily token limit; an
admission is refused exactly when it would pass the limit, and `/api/usage/` reports what
the model says is used (reservations included) and left.
"""

import itertools
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from rest_framework.test import APIClient

from accounts.models import QuotaPolicy, Team, User
from accounts.quotas.charge import Charge
from accounts.roles import Role
from accounts.services import team_create, team_member_add, team_member_remove, user_create
from accounts.services.quotas import (
    QuotaAdmission,
    QuotaRefused,
    quota_admit,
    quota_policy_save,
    quota_release,
    quota_settle,
)
from inference.models import Model
from inference.services import (
    model_access_grant,
    model_access_revoke,
    model_register,
    model_version_promote,
    model_version_register_remote,
)
from tests.accounts.helpers import bearer_client, login
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.reliability, pytest.mark.django_db, pytest.mark.usefixtures("roles")]

# Names are fresh in every run of a machine: runs share the test's database.
_runs = itertools.count()

PEOPLE = ("bob", "dave")
TEAMS = ("red", "blue")
MODELS = ("open", "closed-a", "closed-b")


class AccessMachine(RuleBasedStateMachine):
    """Grants to people and teams, revokes, and people moving between teams."""

    @initialize()
    def world(self) -> None:
        run = next(_runs)
        self.alice = user_create(username=f"alice-{run}", password=None, roles=[Role.ADMIN])
        self.people = {
            name: user_create(username=f"{name}-{run}", password=PASSWORD, roles=[Role.MEMBER])
            for name in PEOPLE
        }
        self.teams = {name: team_create(name=f"{name}-{run}", actor=self.alice) for name in TEAMS}
        self.models: dict[str, Model] = {}
        for name in MODELS:
            model = model_register(name=f"{name}-{run}", open_to_all=name == "open", actor=self.alice)
            version = model_version_register_remote(
                model=model, label="r1", base_url="http://127.0.0.1:9/v1", remote_model="m", actor=self.alice
            )
            model_version_promote(version=version, actor=self.alice)
            self.models[name] = model
        self.clients = {name: _client_for(user) for name, user in self.people.items()}
        # The model of the rules: who holds which grant, who is in which team.
        self.person_grants: set[tuple[str, str]] = set()
        self.team_grants: set[tuple[str, str]] = set()
        self.membership: set[tuple[str, str]] = set()

    @rule(model=st.sampled_from(MODELS), person=st.sampled_from(PEOPLE))
    def grant_to_person(self, model: str, person: str) -> None:
        if (person, model) not in self.person_grants:
            model_access_grant(model=self.models[model], grantee=self.people[person], actor=self.alice)
            self.person_grants.add((person, model))

    @rule(model=st.sampled_from(MODELS), team=st.sampled_from(TEAMS))
    def grant_to_team(self, model: str, team: str) -> None:
        if (team, model) not in self.team_grants:
            model_access_grant(model=self.models[model], grantee=self.teams[team], actor=self.alice)
            self.team_grants.add((team, model))

    @rule(model=st.sampled_from(MODELS), person=st.sampled_from(PEOPLE))
    def revoke_from_person(self, model: str, person: str) -> None:
        model_access_revoke(model=self.models[model], grantee=self.people[person], actor=self.alice)
        self.person_grants.discard((person, model))

    @rule(model=st.sampled_from(MODELS), team=st.sampled_from(TEAMS))
    def revoke_from_team(self, model: str, team: str) -> None:
        model_access_revoke(model=self.models[model], grantee=self.teams[team], actor=self.alice)
        self.team_grants.discard((team, model))

    @rule(person=st.sampled_from(PEOPLE), team=st.sampled_from(TEAMS))
    def join(self, person: str, team: str) -> None:
        team_member_add(team=self.teams[team], user=self.people[person], actor=self.alice)
        self.membership.add((person, team))

    @rule(person=st.sampled_from(PEOPLE), team=st.sampled_from(TEAMS))
    def leave(self, person: str, team: str) -> None:
        team_member_remove(team=self.teams[team], user=self.people[person], actor=self.alice)
        self.membership.discard((person, team))

    def may_use(self, person: str) -> set[str]:
        teams = {team for who, team in self.membership if who == person}
        return {
            model
            for model in MODELS
            if model == "open"
            or (person, model) in self.person_grants
            or any((team, model) in self.team_grants for team in teams)
        }

    @invariant()
    def the_api_lists_and_serves_exactly_what_the_rules_allow(self) -> None:
        if not hasattr(self, "people"):
            return
        names = {model.name: short for short, model in self.models.items()}
        for person, client in self.clients.items():
            expected = self.may_use(person)
            listed = client.get("/v1/models")
            assert listed.status_code == 200
            seen = {names[entry["id"]] for entry in listed.json()["data"] if entry["id"] in names}
            assert seen == expected, f"{person} sees {seen}, the rules say {expected}"
            for short, model in self.models.items():
                status = client.get(f"/v1/models/{model.name}").status_code
                assert status == (200 if short in expected else 404), f"{person} on {short}: {status}"


class QuotaMachine(RuleBasedStateMachine):
    """Reserve, settle and release tokens against a daily limit that the admin may change."""

    @initialize(limit=st.integers(min_value=0, max_value=400))
    def world(self, limit: int) -> None:
        run = next(_runs)
        self.alice = user_create(username=f"alice-q{run}", password=None, roles=[Role.ADMIN])
        self.bob = user_create(username=f"bob-q{run}", password=PASSWORD, roles=[Role.MEMBER])
        self.policy = quota_policy_save(
            policy=QuotaPolicy(name=f"bob-{run}", user=self.bob, tokens_per_day=limit), actor=self.alice
        )
        self.client = _client_for(self.bob)
        self.limit = limit
        # The model: what settled requests charged, and what each open reservation holds.
        self.charged = 0
        self.open: list[tuple[QuotaAdmission, int]] = []

    @property
    def used(self) -> int:
        return self.charged + sum(amount for _, amount in self.open)

    @rule(amount=st.integers(min_value=1, max_value=200))
    def admit(self, amount: int) -> None:
        fits = self.used + amount <= self.limit
        used_before = self.used
        try:
            admission = quota_admit(user=self.bob, api_key=None, token_estimate=amount, lease_seconds=600)
        except QuotaRefused as refused:
            refusal: str | None = refused.code
        else:
            refusal = None
            self.open.append((admission, amount))
        expected = None if fits else "quota_exceeded"
        assert refusal == expected, f"{amount} more with {used_before} of {self.limit} used: {refusal}"

    @precondition(lambda self: bool(getattr(self, "open", None)))
    @rule(data=st.data())
    def settle(self, data: Any) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.open) - 1))
        admission, reserved = self.open.pop(index)
        used = data.draw(st.integers(min_value=0, max_value=reserved))
        quota_settle(admission=admission, charge=Charge(completion_tokens=used))
        self.charged += used

    @precondition(lambda self: bool(getattr(self, "open", None)))
    @rule(data=st.data())
    def release(self, data: Any) -> None:
        admission, _ = self.open.pop(data.draw(st.integers(min_value=0, max_value=len(self.open) - 1)))
        quota_release(admission=admission)

    @rule(limit=st.integers(min_value=0, max_value=400))
    def change_limit(self, limit: int) -> None:
        self.policy.tokens_per_day = limit
        self.policy = quota_policy_save(policy=self.policy, actor=self.alice)
        self.limit = limit

    @invariant()
    def usage_reports_what_the_model_holds(self) -> None:
        if not hasattr(self, "bob"):
            return
        answer = self.client.get("/api/usage/")
        assert answer.status_code == 200
        (tokens,) = [row for row in answer.json()["limits"] if row["dimension"] == "tokens"]
        assert (tokens["max"], tokens["used"], tokens["remaining"]) == (
            self.limit,
            self.used,
            max(0, self.limit - self.used),
        )


def _client_for(user: User) -> APIClient:
    return bearer_client(login(user).access)


MACHINE_SETTINGS = settings(max_examples=25, stateful_step_count=15, deadline=None, database=None)


def test_access_follows_grants_revokes_and_teams() -> None:
    run_state_machine_as_test(AccessMachine, settings=MACHINE_SETTINGS)
    assert Team.objects.exists()  # the machine ran against the database, not beside it


def test_quota_admits_exactly_what_fits_and_reports_what_is_held() -> None:
    run_state_machine_as_test(QuotaMachine, settings=MACHINE_SETTINGS)
    assert QuotaPolicy.objects.exists()
