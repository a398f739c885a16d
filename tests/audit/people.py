"""A person with a bit of everything Gatehouse can hold about them, for export and erasure tests.

Every personal detail is distinctive, so a search for it through every table cannot be
fooled by another fixture's data.
"""

from dataclasses import dataclass, field

from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, QuotaPolicy, UsageRecord, User
from accounts.roles import Role
from accounts.services import api_key_create, role_groups_ensure, team_create, team_member_add, user_create
from accounts.services.quotas import quota_policy_save
from inference.models import Conversation, Message, Model
from inference.services import model_register
from tests.conftest import PASSWORD

USERNAME = "ermengarde-7f3a"
EMAIL = "ermengarde.quist@mailbox.example"
FIRST_NAME = "Ermengarde"
LAST_NAME = "Quistorpian"
ADDRESS = "203.0.113.77"
AGENT = "QuistBrowser/9.1"
SECRET_PLAN = "the quistorpian plan to plant tulips"
# Where the administrator works from: staff details, not the person's.
ADMIN_ADDRESS = "198.51.100.23"
ADMIN_AGENT = "StaffConsole/4.2"


@dataclass
class Person:
    user: User
    key: ApiKey
    key_secret: str
    access: str
    refresh: str
    conversation: Conversation
    personal: list[str] = field(default_factory=list)


def console_client(*, admin: User) -> Client:
    """The console, as `admin` working from their own address and browser."""
    console = Client(REMOTE_ADDR=ADMIN_ADDRESS, HTTP_USER_AGENT=ADMIN_AGENT)
    console.force_login(admin)
    return console


def console_user_change(console: Client, *, user: User, **changes: str) -> None:
    """Save `user`'s change page in the console with `changes` (other fields as they are)."""
    form = {
        "username": user.get_username(),
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        **changes,
    }
    changed = console.post(f"/admin/accounts/user/{user.pk}/change/", form)
    assert changed.status_code == 302, changed.content[:2000]


def person_with_everything(*, admin: User) -> Person:
    role_groups_ensure()
    user = user_create(username=USERNAME, password=PASSWORD, email=EMAIL, roles=[Role.MEMBER])
    # A login over HTTP, from a distinctive address and agent, which the trail records.
    tokens = APIClient(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=AGENT).post(
        "/api/auth/token/", {"username": USERNAME, "password": PASSWORD}, format="json"
    )
    assert tokens.status_code == 200, tokens.content
    failed = APIClient(REMOTE_ADDR=ADDRESS).post(
        "/api/auth/token/", {"username": USERNAME, "password": "wrong"}, format="json"
    )
    assert failed.status_code == 401
    key, secret = api_key_create(user=user, name="garden-key", scopes=["chat"], actor=user)
    model: Model = model_register(name="garden-model", actor=admin)
    team = team_create(name="gardeners", actor=admin)
    team_member_add(team=team, user=user, actor=admin)
    # The console's edits name the person too: their names, their key, their grant.
    console = console_client(admin=admin)
    console_user_change(console, user=user, first_name=FIRST_NAME, last_name=LAST_NAME)
    user.refresh_from_db()
    touched = console.post(f"/admin/accounts/apikey/{key.pk}/change/", {})
    assert touched.status_code == 302, touched.content[:500]
    granted = console.post("/admin/inference/personmodelgrant/add/", {"model": model.pk, "user": user.pk})
    assert granted.status_code == 302, granted.content[:500]
    quota_policy_save(policy=QuotaPolicy(name="garden", user=user, tokens_per_day=1000), actor=admin)
    conversation = Conversation.objects.create(owner=user, model=model, title="tulips")
    Message.objects.create(conversation=conversation, role="user", content=SECRET_PLAN)
    Message.objects.create(conversation=conversation, role="assistant", content="bloom")
    UsageRecord.objects.create(
        created_at=timezone.now(), user_id=user.pk, api_key_id=key.pk, channel="api", prompt_tokens=7,
        completion_tokens=3, outcome="completed", request_id="garden-request",
    )  # fmt: skip
    # A console session, kept by Django as an encoded blob.
    Client().force_login(user)
    return Person(
        user=user,
        key=key,
        key_secret=secret,
        access=tokens.json()["access"],
        refresh=tokens.json()["refresh"],
        conversation=conversation,
        personal=[USERNAME, EMAIL, FIRST_NAME, LAST_NAME, ADDRESS, AGENT, SECRET_PLAN],
    )
