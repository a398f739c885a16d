"""Guardrail policies: validated when saved, audited, merged strictest, replaced by a team's;
and the request check they make (length, deny lists, each kind allowed, redacted or blocked)."""

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from accounts.services import team_create, team_member_add
from audit.models import AuditEvent
from guardrails.models import GuardrailPolicy
from guardrails.prompt import GuardBlocked, prompt_guard
from guardrails.rules import Guard, guard_for
from guardrails.services import guardrail_policy_save
from inference.models import Model
from inference.services import model_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(alice: User) -> Model:
    return model_register(name="guarded", actor=alice)


def _policy(alice: User, **fields: Any) -> GuardrailPolicy:
    return guardrail_policy_save(policy=GuardrailPolicy(name=fields.pop("name", "p"), **fields), actor=alice)


def _guard(model: Model, teams: tuple[int, ...] = ()) -> Guard:
    guard = guard_for(model_id=model.pk, team_ids=teams)
    assert guard is not None
    return guard


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"pii": {"passport": "block"}}, "pii"),
        ({"pii": {"email": "shout"}}, "pii"),
        ({"deny_terms": ["ok", ""]}, "deny_terms"),
        ({"deny_patterns": ["(unclosed"]}, "deny_patterns"),
        ({"deny_patterns": ["x" * 501]}, "deny_patterns"),
    ],
)
def test_a_policy_that_breaks_a_rule_is_refused_whole(
    alice: User, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        _policy(alice, **fields)
    assert field in refused.value.message_dict
    assert not GuardrailPolicy.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="guardrail.policy").exists()


def test_changes_are_audited_without_the_deny_list_itself(alice: User, model: Model) -> None:
    policy = _policy(alice, model=model, deny_terms=["project falcon"], pii={"email": "redact"})
    policy.pii = {"email": "block"}
    guardrail_policy_save(policy=policy, actor=alice)
    changed = AuditEvent.objects.get(action="guardrail.policy.changed")
    assert changed.metadata["before"]["pii"] == {"email": "redact"}
    assert changed.metadata["after"]["pii"] == {"email": "block"}
    assert changed.metadata["after"]["deny_terms"] == 1
    assert "falcon" not in str(changed.metadata)


def test_policies_merge_strictest_and_a_teams_replace_them(alice: User, bob: User, model: Model) -> None:
    _policy(alice, name="everywhere", pii={"email": "redact", "card": "redact"}, max_prompt_chars=500)
    _policy(alice, name="this model", model=model, pii={"card": "block"}, max_prompt_chars=100)
    guard = _guard(model)
    assert (guard.action("email"), guard.action("card"), guard.max_prompt_chars) == ("redact", "block", 100)
    assert guard.policies == ("everywhere", "this model")

    team = team_create(name="support", actor=alice)
    team_member_add(team=team, user=bob, actor=alice)
    _policy(alice, name="support", team=team, pii={"email": "allow", "card": "redact"})
    relaxed = _guard(model, (team.pk,))
    assert (relaxed.action("email"), relaxed.action("card"), relaxed.max_prompt_chars) == (
        "allow",
        "redact",
        None,
    )


def test_no_policy_no_guard(model: Model) -> None:
    assert guard_for(model_id=model.pk, team_ids=()) is None


def test_the_request_check_redacts_blocks_and_allows_by_kind(alice: User, model: Model) -> None:
    _policy(alice, model=model, pii={"email": "redact", "card": "block", "phone": "allow"})
    guard = _guard(model)
    guarded = prompt_guard(guard=guard, texts=["mail a@b.io or c@d.io", "call 555-123-4567"])
    assert guarded.texts == ["mail [EMAIL] or [EMAIL]", "call 555-123-4567"]
    assert guarded.redacted == {"email": 2}
    with pytest.raises(GuardBlocked) as blocked:
        prompt_guard(guard=guard, texts=["mail a@b.io", "pay 4111 1111 1111 1111"])
    assert (blocked.value.code, blocked.value.kinds) == ("content_blocked", ("card",))
    assert "a payment card number" in blocked.value.message
    assert "4111" not in blocked.value.message


def test_deny_terms_match_whole_words_in_any_case_and_patterns_too(alice: User, model: Model) -> None:
    _policy(alice, model=model, deny_terms=["Project Falcon"], deny_patterns=[r"\binternal-[0-9]+\b"])
    guard = _guard(model)
    for text in ("about project  falcon", "PROJECT FALCON?", "ticket internal-42"):
        if "  " in text:
            assert prompt_guard(guard=guard, texts=[text]).texts == [text]  # not the phrase
            continue
        with pytest.raises(GuardBlocked) as blocked:
            prompt_guard(guard=guard, texts=[text])
        assert blocked.value.message.endswith("it contains a denied term.")
    assert prompt_guard(guard=guard, texts=["falconry and projects"]).texts == ["falconry and projects"]


def test_a_pattern_too_slow_to_finish_blocks_rather_than_lets_through(alice: User, model: Model) -> None:
    _policy(alice, model=model, deny_patterns=[r"(a|aa)+$"])
    with pytest.raises(GuardBlocked):
        prompt_guard(guard=_guard(model), texts=["a" * 40 + "!"])


def test_a_prompt_over_the_limit_is_refused_naming_both_sizes(alice: User, model: Model) -> None:
    _policy(alice, model=model, max_prompt_chars=10)
    with pytest.raises(GuardBlocked) as blocked:
        prompt_guard(guard=_guard(model), texts=["hello", "world!"])
    assert blocked.value.code == "prompt_too_long"
    assert "11 characters" in blocked.value.message
    assert "at most 10" in blocked.value.message
