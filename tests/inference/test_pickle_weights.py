"""Pickle weights are refused when a version loads, not only by the policy function.

A `.bin` checkpoint is unpickled by torch and can run code. A version registered without
`allow_pickle_weights` that holds one (its manifest lists it, so verification alone would
pass) never loads: the chat that asks for it gets `unavailable`, the refusal is audited as
`model.version.load_refused`, nothing is generated and nothing is stored.
"""

import shutil
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from accounts.models import User
from audit.models import AuditEvent
from inference.models import Conversation, Message, ModelVersion
from inference.services import model_version_promote, model_version_register
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

REFUSED_MESSAGE = "The model's weights are in a format this version may not load."


def _pickled_copy(source: Path, directory: Path) -> Path:
    """demo-tiny's files with its weights saved by `torch.save` (pickle) instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, directory)
    weights = directory / "model.safetensors"
    torch.save(load_file(weights), directory / "pytorch_model.bin")
    weights.unlink()
    return directory


def _pickled_version(demo_version: ModelVersion, alice: User, directory: Path) -> ModelVersion:
    version = model_version_register(
        model=demo_version.model,
        label="pickled",
        source=str(_pickled_copy(demo_version.source_path, directory)),
        context_length=demo_version.context_length,
        allow_pickle_weights=False,
        actor=alice,
    )
    assert "pytorch_model.bin" in version.manifest
    assert not any(name.endswith(".safetensors") for name in version.manifest)
    return model_version_promote(version=version, actor=alice)


@pytest.fixture
def pickled(demo_version: ModelVersion, alice: User, tmp_path: Path) -> ModelVersion:
    return _pickled_version(demo_version, alice, tmp_path / "pickled")


def _nothing_stored() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()


def _refusal(version: ModelVersion) -> AuditEvent:
    (refused,) = AuditEvent.objects.filter(action="model.version.load_refused", target_id=str(version.pk))
    return refused


async def test_a_chat_on_pickle_weights_is_refused_at_load_audited_and_stores_nothing(
    bob: User, pickled: ModelVersion
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(chat_frame("p1"))
    frames = await frames_until_end(communicator, "p1")
    await communicator.disconnect()
    assert [frame["type"] for frame in frames] == ["start", "error"], frames
    assert frames[0]["version"] == "pickled"
    assert (frames[-1]["code"], frames[-1]["message"]) == ("unavailable", REFUSED_MESSAGE)
    refused = await database_sync_to_async(_refusal)(pickled)
    assert refused.outcome == AuditEvent.Outcome.DENIED
    assert "pickle weight files ['pytorch_model.bin']" in refused.metadata["reason"]
    assert await database_sync_to_async(_nothing_stored)() == (0, 0)


async def test_the_api_answers_503_for_a_version_with_pickle_weights(
    bob: User, pickled: ModelVersion
) -> None:
    body: dict[str, Any] = {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
    }
    response = await AsyncClient().post(
        "/v1/chat/completions",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {await access_token(bob)}"},
    )
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("unavailable", REFUSED_MESSAGE)
    refused = await database_sync_to_async(_refusal)(pickled)
    assert "pytorch_model.bin" in refused.metadata["reason"]
    assert await database_sync_to_async(_nothing_stored)() == (0, 0)
