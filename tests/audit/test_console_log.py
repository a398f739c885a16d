"""The console's change log on the trail: rows about a person carry their pseudonym, and the
chained metadata never names an object."""

from django.contrib.admin.models import CHANGE, LogEntry

from accounts.models import Team, User
from accounts.services import api_key_create, team_create
from audit.console_log import console_log_entry_record
from audit.models import AuditEvent
from audit.subjects import audit_pseudonym


def _recorded(*, actor: User, obj: object, message: object) -> AuditEvent:
    entry = LogEntry.objects.log_actions(
        user_id=actor.pk, queryset=[obj], action_flag=CHANGE, change_message=message, single_object=True
    )
    console_log_entry_record(entry=entry)
    return AuditEvent.objects.order_by("-id").first()  # type: ignore[return-value]


def test_an_inlines_object_is_named_by_kind_only(alice: User, bob: User) -> None:
    message = [
        {"added": {"name": "API key", "object": "bob's laptop"}},
        {"changed": {"fields": ["First name"]}},
    ]
    event = _recorded(actor=alice, obj=bob, message=message)
    assert event.metadata["change"] == "Added API key. Changed First name."
    assert "bob" not in event.metadata_json
    assert str(event.target_pseudonym) == audit_pseudonym(user=bob)


def test_a_persons_key_is_about_them_and_a_team_about_nobody(alice: User, bob: User) -> None:
    key, _ = api_key_create(user=bob, name="laptop", scopes=["chat"], actor=bob)
    assert str(_recorded(actor=alice, obj=key, message="").target_pseudonym) == audit_pseudonym(user=bob)
    team: Team = team_create(name="research", actor=alice)
    assert _recorded(actor=alice, obj=team, message="").target_pseudonym is None
