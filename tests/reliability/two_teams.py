"""Two members of two teams, and everything one of them owns: the fuzzing's world.

Run inside a served stack (`manage.py shell`), so the rows are that stack's own. bob (team
red) is the one the fuzzer acts as; dave (team blue) owns an API key (with its own budget),
a conversation, a data export, an erasure request and the only grant on a closed model. Whatever bob is
answered must never reveal or touch any of it.
"""

from typing import Any

PASSWORD = "two-teams-have-long-passwords-1"


def two_teams_seed() -> dict[str, Any]:
    from accounts.roles import Role
    from accounts.services import api_key_create, team_create, team_member_add, user_create
    from audit.compliance.data_exports import compliance_export_request
    from audit.compliance.erasure import compliance_erasure_request
    from inference.models import Model
    from inference.services import model_access_grant, model_register, model_version_register_remote
    from inference.services.conversations import conversation_exchange_record
    from spend.models import Budget
    from spend.services import budget_save

    bob = user_create(username="bob", password=PASSWORD, roles=[Role.MEMBER])
    dave = user_create(username="dave", password=PASSWORD, roles=[Role.MEMBER])
    red, blue = team_create(name="red", actor=None), team_create(name="blue", actor=None)
    team_member_add(team=red, user=bob, actor=None)
    team_member_add(team=blue, user=dave, actor=None)

    closed = model_register(name="blue-only", open_to_all=False, actor=None)
    model_access_grant(model=closed, grantee=blue, actor=None)
    version = model_version_register_remote(
        model=closed, label="blue-r1", base_url="https://93.184.216.34/v1", remote_model="m", actor=None
    )
    key, _ = api_key_create(user=dave, name="dave's key", scopes=["chat"], actor=dave)
    budget = budget_save(
        budget=Budget(name="dave's key budget", api_key=key, period=Budget.Period.DAY, amount=5), actor=dave
    )
    demo = Model.objects.get(name="demo-tiny").versions.get(label="v1")
    conversation = conversation_exchange_record(
        conversation_id="6f1c7a52-0a5e-4a8e-9a53-5d0a3b1c2e77",
        owner_id=dave.pk,
        version_id=demo.pk,
        channel="api",
        new_messages=[{"role": "user", "content": "dave's secret question"}],
        reply="dave's secret answer",
        prompt_tokens=5,
        completion_tokens=4,
        finish_reason="stop",
    )
    export = compliance_export_request(subject=dave, requested_by=dave)
    erasure = compliance_erasure_request(subject=dave, requested_by=dave)
    return {
        "bob": {"username": "bob", "password": PASSWORD},
        "dave": {
            "key_id": key.pk,
            "budget_id": budget.pk,
            "key_prefix": key.prefix,
            "conversation_id": str(conversation.pk),
            "export_id": str(export.pk),
            "erasure_id": str(erasure.pk),
            "model_name": closed.name,
            "version_label": version.label,
            "conversation_text": "dave's secret answer",
        },
    }
