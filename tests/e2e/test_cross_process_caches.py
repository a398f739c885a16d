"""Two web processes, one platform: a change made through one is obeyed by the other at once.

Each web process keeps who a credential belongs to, what a user may run and which quota
policies apply in memory (gatehouse.local_cache); a change announces itself on Redis and
every process drops what it held. Here a second web server joins the shared stack; both
serve the caller first (so both hold it), the change goes through the first (or through a
management command, a third process), and the second's very next request obeys it.
"""

import uuid

import httpx
import pytest

from tests.e2e.server import ServedGatehouse
from tests.fake_openai import fake_upstream
from tests.profile import PRODUCTION

pytestmark = pytest.mark.skipif(
    not PRODUCTION,
    reason="the caches are kept only where Redis carries the announcements (production profile)",
)


def _chat(base_url: str, key: str, model: str = "demo-tiny") -> int:
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
            "temperature": 0,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    return response.status_code


def _key(gatehouse: ServedGatehouse, token: str) -> tuple[int, str]:
    created = httpx.post(
        f"{gatehouse.base_url}/api/keys/",
        json={"name": f"cache-{uuid.uuid4().hex[:6]}", "scopes": ["chat"]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    created.raise_for_status()
    return int(created.json()["id"]), str(created.json()["key"])


def _user_with_key(gatehouse: ServedGatehouse) -> tuple[str, str]:
    """A new member and an API key of theirs (made by a management command: a third process)."""
    username = f"cached-{uuid.uuid4().hex[:8]}"
    output = gatehouse.manage(
        "shell",
        "-c",
        "from accounts.services import user_create; from accounts.services.api_keys import api_key_create; "
        f"user = user_create(username={username!r}, password='correct-horse-battery-staple'); "
        "print(api_key_create(user=user, name='k', scopes=['chat'], actor=user)[1])",
    )
    return username, output.strip().splitlines()[-1]


def test_a_key_revoked_through_one_process_is_refused_by_the_other_at_once(
    gatehouse: ServedGatehouse, second_server: str
) -> None:
    token = gatehouse.admin_token()
    key_id, key = _key(gatehouse, token)
    assert _chat(gatehouse.base_url, key) == 200
    assert _chat(second_server, key) == 200  # both processes now hold the key
    revoked = httpx.delete(
        f"{gatehouse.base_url}/api/keys/{key_id}/", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert revoked.status_code in (200, 204), revoked.text
    assert _chat(second_server, key) == 401
    assert _chat(gatehouse.base_url, key) == 401


def test_a_user_deactivated_by_another_process_is_refused_by_both_at_once(
    gatehouse: ServedGatehouse, second_server: str
) -> None:
    username, key = _user_with_key(gatehouse)
    assert _chat(gatehouse.base_url, key) == 200
    assert _chat(second_server, key) == 200
    gatehouse.manage(
        "shell",
        "-c",
        "from accounts.models import User; from accounts.services.users import user_deactivate; "
        f"user_deactivate(user=User.objects.get(username={username!r}), actor=None)",
    )
    assert _chat(second_server, key) == 401
    assert _chat(gatehouse.base_url, key) == 401


def test_a_model_closed_by_another_process_is_hidden_by_both_at_once(
    gatehouse: ServedGatehouse, second_server: str
) -> None:
    name = f"closing-{uuid.uuid4().hex[:6]}"
    with fake_upstream() as upstream:
        gatehouse.manage(
            "shell",
            "-c",
            "from inference.services import model_register, model_version_promote; "
            "from inference.services.registry import model_version_register_remote; "
            f"model = model_register(name={name!r}, open_to_all=True, actor=None); "
            "version = model_version_register_remote(model=model, label='v1', "
            f"base_url={upstream.base_url!r}, remote_model='upstream-model', actor=None); "
            "model_version_promote(version=version, actor=None)",
        )
        _, key = _user_with_key(gatehouse)
        assert _chat(gatehouse.base_url, key, name) == 200
        assert _chat(second_server, key, name) == 200
        gatehouse.manage(
            "shell", "-c", f"from inference.models import Model; m = Model.objects.get(name={name!r}); "
            "m.open_to_all = False; m.save()"
        )  # fmt: skip
        assert _chat(second_server, key, name) == 404
        assert _chat(gatehouse.base_url, key, name) == 404
