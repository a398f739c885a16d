"""Fixtures of the encryption tests."""

from typing import Any

import pytest

from encryption.data_keys import data_keys_forget
from encryption.models import DataKey
from tests.encryption.helpers import master_key_entry


@pytest.fixture
def master_key_a(settings: Any) -> str:
    """Master key `a` alone, and no data key yet (the one migrations started protects nothing)."""
    DataKey.objects.all().delete()
    entry = master_key_entry("a")
    settings.GATEHOUSE_ENCRYPTION_KEYS = entry
    data_keys_forget()
    return entry
