"""The restore drill's steps inside a Gatehouse process (gatehouse.restore_drill runs them).

`populate` gives a freshly bootstrapped database a member, an API key, a completed chat and a
stored conversation (encrypted at rest), all audited, and writes what the later steps need (the
key, the conversation) to a JSON file. `chat` reads the stored conversation back, then sends one
chat with that key through the whole HTTP stack on the in-process executor and waits for its
audit record: on a restored database it proves the user, the key, the model, the trail and the
encrypted content came back usable (with the master keys from the environment), not only present.

Each step raises SystemExit with a message on failure: a stored conversation that does not read
back, a refused or empty answer, or no `inference.completed` record within CHAT_AUDIT_SECONDS.
"""

import argparse
import json
import os
import sys
import time
import uuid
from http import HTTPStatus
from pathlib import Path

import django

MEMBER = "drill-member"
STORED_QUESTION = "What does the restore drill keep?"
CHAT_AUDIT_SECONDS = 30.0


def _chat(key: str) -> str:
    """One non-streamed chat on the demo model; returns the answer's text."""
    from django.test import Client

    from audit.models import AuditEvent

    before = AuditEvent.objects.filter(action="inference.completed").count()
    response = Client().post(
        "/v1/chat/completions",
        {
            "model": "demo-tiny",
            "max_tokens": 8,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Drill."}],
        },
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}", "Host": "127.0.0.1"},
    )
    if response.status_code != HTTPStatus.OK:
        raise SystemExit(f"the chat was refused: {response.status_code} {response.content[:300]!r}")
    text = str(response.json()["choices"][0]["message"]["content"])
    if not text:
        raise SystemExit("the chat answered nothing")
    deadline = time.monotonic() + CHAT_AUDIT_SECONDS
    while AuditEvent.objects.filter(action="inference.completed").count() <= before:
        if time.monotonic() > deadline:
            raise SystemExit("the chat left no inference.completed record in the trail")
        time.sleep(0.2)
    return text


def populate(state: Path) -> None:
    """Audited actions on top of `bootstrap`: a member, an API key, a chat."""
    from accounts.models import User
    from accounts.roles import Role
    from accounts.services import user_create
    from accounts.services.api_keys import api_key_create

    admin = User.objects.get(username=os.environ.get("GATEHOUSE_ADMIN_USERNAME") or "admin")
    member = user_create(username=MEMBER, password=None, roles=[Role.MEMBER], created_by=admin)
    _, key = api_key_create(user=member, name="restore drill", scopes=["chat"], actor=admin)
    _chat(key)
    state.write_text(
        json.dumps({"member": MEMBER, "api_key": key, "conversation": _conversation_store(member.pk)})
    )


def _conversation_store(owner_id: int) -> str:
    from inference.models import ModelVersion
    from inference.services.conversations import conversation_exchange_record

    conversation_id = str(uuid.uuid4())
    conversation_exchange_record(
        conversation_id=conversation_id,
        owner_id=owner_id,
        version_id=ModelVersion.objects.filter(model__name="demo-tiny").values_list("pk", flat=True)[0],
        channel="api",
        new_messages=[{"role": "user", "content": STORED_QUESTION}],
        reply="Everything.",
        prompt_tokens=1,
        completion_tokens=1,
        finish_reason="stop",
    )
    return conversation_id


def _conversation_check(conversation_id: str) -> None:
    from inference.models import Message

    said = [message.content for message in Message.objects.filter(conversation_id=conversation_id)]
    if said != [STORED_QUESTION, "Everything."]:
        raise SystemExit(f"the stored conversation did not read back: {said!r}")


def chat(state: Path) -> None:
    saved = json.loads(state.read_text())
    _conversation_check(saved["conversation"])
    text = _chat(saved["api_key"])
    sys.stdout.write(f"stored conversation read back; chat answered: {text!r}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gatehouse.restore_drill_stack")
    parser.add_argument("step", choices=["populate", "chat"])
    parser.add_argument("--state", type=Path, required=True, help="the JSON file populate writes")
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse.settings")
    django.setup()
    (populate if options.step == "populate" else chat)(options.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
