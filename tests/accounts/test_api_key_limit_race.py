"""The per-person key limit holds when several creations race (PostgreSQL, real threads)."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from accounts.services.api_keys import MAX_KEYS_PER_USER
from tests.profile import PRODUCTION

RACERS = 8


@pytest.mark.skipif(not PRODUCTION, reason="SQLite serialises every writer; the race needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_creations_never_pass_the_key_limit(bob: User) -> None:
    for number in range(MAX_KEYS_PER_USER - 1):
        api_key_create(user=bob, actor=bob, name=f"k{number}", scopes=["chat"])
    start = threading.Barrier(RACERS)
    outcomes: list[str] = []

    def create(number: int) -> None:
        try:
            start.wait()
            api_key_create(user=bob, actor=bob, name=f"racer{number}", scopes=["chat"])
            outcomes.append("created")
        except ValidationError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(number,)) for number in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created"] + ["refused"] * (RACERS - 1)
    assert ApiKey.objects.filter(user=bob, revoked_at__isnull=True).count() == MAX_KEYS_PER_USER
