"""Generation jobs for tests that run `generation_run` directly, without a consumer."""

import uuid
from typing import Any

from accounts.models import User
from inference.generation import GenerationJob
from inference.models import ModelVersion


def generation_job(user: User, version: ModelVersion, **fields: Any) -> GenerationJob:
    """A job for `user` on `version` (a demo-tiny version), a short greedy answer to "hello";
    `fields` replace any of those."""
    defaults: dict[str, Any] = {
        "generation_id": f"test-{uuid.uuid4().hex[:8]}",
        "client_id": "c1",
        "reply_channel": "nobody",
        "version_id": version.pk,
        "model_name": "demo-tiny",
        "messages": [{"role": "user", "content": "hello"}],
        "user_id": user.pk,
        "params": {"max_tokens": 8, "temperature": 0.0},
    }
    return GenerationJob(**{**defaults, **fields})
