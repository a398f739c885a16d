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
from inference.services import model_access_grant, model_register
from tests.conftest import PASSWORD

USERNAME = "ermengarde-7f3a"
EMAIL = "ermengarde.quist@mailbox.example"
FIRST_NAME = "Ermengarde"
LAST_NAME = "Quistorpian"
ADDRESS = "203.0.113.77"
AGENT = "QuistBrowser/9.1"
SECRET_PLAN = "the quistorpian plan to plant tulips"


@dataclass
class Person:
    user: User
    key: ApiKey
    key_secret: str
    access: str
    refresh: str
    conversation: Conversation
    personal: list[str] = field(default_factory=list)


def person_with_everything(*, admin: User) -> Person:
    role_groups_ensure()
    user = user_create(username=USERNAME, password=PASSWORD, email=EMAIL, roles=[Role.MEMBER])
    user.first_name, user.last_name = FIRST_NAME, LAST_NAME
    user.save(update_fields=["first_name", "last_name"])
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
    model_access_grant(model=model, grantee=user, actor=admin)
    team = team_create(name="gardeners", actor=admin)
    team_member_add(team=team, user=user, actor=admin)
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
