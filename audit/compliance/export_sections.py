"""What an export holds: every piece of personal data Gatehouse keeps about one person.

Each section is one file of the zip. Secrets never appear: API keys are listed by name,
prefix and scopes, never by their stored hash; passwords and second-factor seeds not at all.
"""

import json
from collections.abc import Callable, Iterator

from django.db.models import F, Q

from accounts.models import ApiKey, QuotaPolicy, RefreshFamily, UsageRecord, UsageRollup, User
from accounts.roles import Role
from audit.exports import event_export_record
from audit.models import AuditEvent
from audit.sealing import audit_seal_pending
from inference.models import Conversation


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str).encode()


def _profile(user: User) -> object:
    groups = list(user.groups.values_list("name", flat=True))
    roles = {role.value for role in Role}
    return {
        "username": user.get_username(),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": user.date_joined,
        "last_login": user.last_login,
        "is_active": user.is_active,
        "roles": sorted(name for name in groups if name in roles),
        "teams": sorted(user.groups.filter(team__isnull=False).values_list("team__name", flat=True)),
    }


def _api_keys(user: User) -> object:
    return list(
        ApiKey.objects.filter(user=user)
        .order_by("created_at")
        .values(
            "name",
            "prefix",
            "scopes",
            "allowed_networks",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        )
    )


def _sessions(user: User) -> object:
    return list(
        RefreshFamily.objects.filter(user=user)
        .order_by("created_at")
        .values("id", "created_at", "revoked_at", "revoked_reason")
    )


def _quota_policies(user: User) -> object:
    return list(
        QuotaPolicy.objects.filter(user=user).values(
            "name",
            "requests_per_minute",
            "tokens_per_day",
            "tokens_per_month",
            "concurrent_streams",
            "created_at",
        )
    )


def _usage(user: User) -> object:
    return {
        "records": list(
            UsageRecord.objects.filter(user_id=user.pk)
            .order_by("created_at")
            .values(
                "created_at",
                "channel",
                "model_version_id",
                "prompt_tokens",
                "completion_tokens",
                "latency_ms",
                "time_to_first_token_ms",
                "outcome",
                "request_id",
            )
        ),
        "rollups": list(
            UsageRollup.objects.filter(user_id=user.pk)
            .order_by("period", "period_start")
            .values(
                "period",
                "period_start",
                "channel",
                "requests",
                "failures",
                "prompt_tokens",
                "completion_tokens",
            )
        ),
    }


def _conversations(user: User) -> object:
    conversations = (
        Conversation.objects.filter(owner=user).select_related("model").prefetch_related("messages")
    )
    return [
        {
            "id": conversation.pk,
            "title": conversation.title,
            "model": conversation.model.name,
            "channel": conversation.channel,
            "created_at": conversation.created_at,
            "messages": [
                {
                    "role": message.role,
                    "content": message.content,
                    "created_at": message.created_at,
                    "finish_reason": message.finish_reason,
                    "prompt_tokens": message.prompt_tokens,
                    "completion_tokens": message.completion_tokens,
                }
                for message in conversation.messages.order_by("created_at", "pk")
            ],
        }
        for conversation in conversations.order_by("created_at")
    ]


# What identifies someone else on a row about the person: withheld from their export.
_OTHER_ACTOR_FIELDS = ("actor_pseudonym", "actor_digest", "actor_display", "client_ip", "user_agent")
_OTHER_TARGET_FIELDS = ("target_pseudonym", "target_digest", "target_display")


class _Roles:
    """Each actor's platform roles as they stand now, looked up once per actor."""

    def __init__(self) -> None:
        self.known: dict[int, list[str]] = {}

    def of(self, user_id: int | None) -> list[str]:
        if user_id is None:
            return []
        if user_id not in self.known:
            user = User.objects.filter(pk=user_id).first()
            names = set(user.groups.values_list("name", flat=True)) if user else set()
            roles = {role.value for role in Role} & names
            if user is not None and user.is_superuser:
                roles.add(Role.ADMIN.value)
            self.known[user_id] = sorted(roles)
        return self.known[user_id]


def audit_event_for_subject(*, event: AuditEvent, pseudonym: str, roles: list[str]) -> dict[str, object]:
    """`event` as the person `pseudonym` receives it: their own details, and of anyone else
    (the administrator who acted on them, the person they acted on) only the kind and the
    role (`roles`, the actor's roles now). `withheld` names what was blanked; such a row
    is matched to the trail by its sequence and hash."""
    record = event_export_record(event)
    withheld: list[str] = []
    actor = str(event.actor_pseudonym or "")
    if actor and actor != pseudonym:
        withheld += _OTHER_ACTOR_FIELDS
    target = str(event.target_pseudonym or "")
    if target and target != pseudonym:
        withheld += _OTHER_TARGET_FIELDS
    for name in withheld:
        record[name] = ""
    record["actor_roles"] = roles
    record["withheld"] = withheld
    return record


def _audit_events(pseudonym: str) -> bytes:
    """Events by or about the person, with their chained fields and hash (checkable against
    the trail) and the personal details the trail holds about them, but not about others.

    Whoever may download an export (the person, or an officer on their behalf) gets this
    same file, so it never holds another person's name, address, agent or pseudonym.

    What has committed is sealed first, so each row carries its chain position; one written
    after that comes last, with none yet."""
    lines = []
    audit_seal_pending()
    events = AuditEvent.objects.filter(Q(actor_pseudonym=pseudonym) | Q(target_pseudonym=pseudonym)).order_by(
        F("sequence").asc(nulls_last=True), "id"
    )
    roles = _Roles()
    for event in events.iterator(chunk_size=2000):
        record = audit_event_for_subject(event=event, pseudonym=pseudonym, roles=roles.of(event.actor_id))
        lines.append(json.dumps(record, ensure_ascii=False))
    return ("\n".join(lines) + "\n" if lines else "").encode()


SectionBuilder = Callable[[User, str], bytes]

SECTIONS: tuple[tuple[str, SectionBuilder], ...] = (
    ("profile.json", lambda user, _: _json(_profile(user))),
    ("api_keys.json", lambda user, _: _json(_api_keys(user))),
    ("sessions.json", lambda user, _: _json(_sessions(user))),
    ("quota_policies.json", lambda user, _: _json(_quota_policies(user))),
    ("usage.json", lambda user, _: _json(_usage(user))),
    ("conversations.json", lambda user, _: _json(_conversations(user))),
    ("audit_events.jsonl", lambda _, pseudonym: _audit_events(pseudonym)),
)


def export_sections(*, user: User, pseudonym: str) -> Iterator[tuple[str, bytes]]:
    """(file name, contents) for each section, built one at a time."""
    for name, build in SECTIONS:
        yield name, build(user, pseudonym)
