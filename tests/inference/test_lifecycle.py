"""Version lifecycle: staging, promotion, canaries, rollback, retirement; all audited."""

from collections import Counter
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from accounts.models import User
from audit.models import AuditEvent
from inference.demo_model import demo_model_build
from inference.models import Model, ModelVersion
from inference.protocol import frame_parse
from inference.selectors import model_version_route
from inference.services import (
    chat_prepare,
    model_canary_stop,
    model_version_canary_start,
    model_version_promote,
    model_version_register,
    model_version_retire,
    model_version_rollback,
    model_version_stage,
)


def register_second_version(model: Model, *, actor: User | None, label: str = "v2") -> ModelVersion:
    """Another version of demo-tiny: the same deterministic build in its own directory."""
    from django.conf import settings

    directory = Path(settings.GATEHOUSE_MODEL_ROOT) / model.name / label
    if not directory.is_dir():
        demo_model_build(directory=directory)
    return model_version_register(
        model=model, label=label, source=str(directory), context_length=512, actor=actor
    )


@pytest.fixture
def v2(demo_version: ModelVersion, alice: User) -> ModelVersion:
    return register_second_version(demo_version.model, actor=alice)


def _served_label(user: User, *, conversation: str = "c") -> str:
    frame = frame_parse(
        {"type": "chat", "id": "x", "model": "demo-tiny", "messages": [{"role": "user", "content": "hi"}]}
    )
    return chat_prepare(user=user, frame=frame, sticky_key=f"{user.pk}:{conversation}").version_label


def test_a_new_version_starts_as_a_draft_with_its_manifest(v2: ModelVersion) -> None:
    assert v2.status == ModelVersion.Status.DRAFT
    assert "model.safetensors" in v2.manifest


def test_promotion_swaps_production_and_retires_the_old_one(
    demo_version: ModelVersion, v2: ModelVersion, alice: User, bob: User
) -> None:
    model_version_stage(version=v2, actor=alice)
    model_version_promote(version=v2, actor=alice)
    demo_version.refresh_from_db()
    assert demo_version.status == ModelVersion.Status.RETIRED
    assert _served_label(bob) == "v2"
    event = AuditEvent.objects.filter(action="model.version.promoted", actor=alice).get()
    assert event.metadata["before"]["production"] == "v1"
    assert event.metadata["after"]["production"] == "v2"


def test_rollback_takes_effect_on_the_next_request(
    demo_version: ModelVersion, v2: ModelVersion, alice: User, bob: User
) -> None:
    model_version_promote(version=v2, actor=alice)
    assert _served_label(bob) == "v2"
    model_version_rollback(model=demo_version.model, actor=alice)
    assert _served_label(bob) == "v1"
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.RETIRED
    assert AuditEvent.objects.filter(action="model.version.rolled_back").count() == 1


def test_a_canary_at_30_percent_gets_about_30_percent_of_1000_requests(
    demo_version: ModelVersion, v2: ModelVersion, alice: User
) -> None:
    model_version_stage(version=v2, actor=alice)
    model = model_version_canary_start(version=v2, weight=30, actor=alice)
    served = Counter(
        model_version_route(model=model, sticky_key=f"conversation-{n}").label for n in range(1000)
    )  # type: ignore[union-attr]
    assert served["v1"] + served["v2"] == 1000
    assert 270 <= served["v2"] <= 330, served


def test_a_conversation_sticks_to_its_version(
    demo_version: ModelVersion, v2: ModelVersion, alice: User
) -> None:
    model_version_stage(version=v2, actor=alice)
    model = model_version_canary_start(version=v2, weight=50, actor=alice)
    for n in range(50):
        labels = {model_version_route(model=model, sticky_key=f"k{n}").label for _ in range(5)}  # type: ignore[union-attr]
        assert len(labels) == 1


def test_stopping_or_promoting_the_canary_ends_it(
    demo_version: ModelVersion, v2: ModelVersion, alice: User, bob: User
) -> None:
    model_version_stage(version=v2, actor=alice)
    model = model_version_canary_start(version=v2, weight=99, actor=alice)
    model_canary_stop(model=model, actor=alice)
    assert {_served_label(bob, conversation=str(n)) for n in range(20)} == {"v1"}
    model = model_version_canary_start(version=v2, weight=10, actor=alice)
    model_version_promote(version=v2, actor=alice)
    model.refresh_from_db()
    assert model.canary_version is None
    assert model.canary_weight == 0


@pytest.mark.parametrize("weight", [0, 100, -5])
def test_canary_weights_outside_1_to_99_are_refused(
    demo_version: ModelVersion, v2: ModelVersion, alice: User, weight: int
) -> None:
    model_version_stage(version=v2, actor=alice)
    with pytest.raises(ValidationError, match="percentage from 1 to 99"):
        model_version_canary_start(version=v2, weight=weight, actor=alice)
    assert not AuditEvent.objects.filter(action="model.version.canary_started").exists()


def test_only_staging_versions_can_be_canaries(
    demo_version: ModelVersion, v2: ModelVersion, alice: User
) -> None:
    with pytest.raises(ValidationError, match="must be a staging version"):
        model_version_canary_start(version=v2, weight=10, actor=alice)


def test_invalid_transitions_say_why(demo_version: ModelVersion, v2: ModelVersion, alice: User) -> None:
    with pytest.raises(ValidationError, match="cannot be retired directly"):
        model_version_retire(version=demo_version, actor=alice)
    with pytest.raises(ValidationError, match="Only a draft can be staged"):
        model_version_stage(version=demo_version, actor=alice)
    with pytest.raises(ValidationError, match="no earlier production version"):
        model_version_rollback(model=demo_version.model, actor=alice)
    model_version_retire(version=v2, actor=alice)
    with pytest.raises(ValidationError, match="Only a draft or staging version can be promoted"):
        model_version_promote(version=v2, actor=alice)
    demo_version.refresh_from_db()
    assert demo_version.status == ModelVersion.Status.PRODUCTION


@override_settings(GATEHOUSE_MODEL_SEPARATION_OF_DUTIES=True)
def test_separation_of_duties_stops_self_approval(
    demo_version: ModelVersion, v2: ModelVersion, alice: User
) -> None:
    from accounts.roles import Role
    from accounts.services import user_create

    model_version_stage(version=v2, actor=alice)
    with pytest.raises(ValidationError, match="Separation of duties"):
        model_version_promote(version=v2, actor=alice)
    with pytest.raises(ValidationError, match="Separation of duties"):
        model_version_canary_start(version=v2, weight=5, actor=alice)
    erin = user_create(username="erin", password="x-long-password-1", roles=[Role.MODEL_MANAGER])
    assert model_version_promote(version=v2, actor=erin).status == ModelVersion.Status.PRODUCTION
