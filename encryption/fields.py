"""A text column stored encrypted and read back as plain text."""

from typing import Any

from django.db import models
from django.db.models.lookups import IsNull, Lookup, Transform

from encryption.envelope import text_open, text_seal


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Text sealed under the current data key on every write, opened on every read.

    `purpose` names what the column holds and is bound to each value (a value moved to another
    column does not decrypt); it is part of the stored data, so it must never change once rows
    exist. SQL cannot see the text: the column supports no lookup but `isnull`, and cannot be
    searched, compared or usefully ordered by. Writes that bypass the ORM (raw SQL) must seal
    their values with `encryption.envelope.text_seal`.
    """

    def __init__(self, *args: Any, purpose: str, **kwargs: Any) -> None:
        self.purpose = purpose
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["purpose"] = self.purpose
        return name, path, args, kwargs

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None:
            return None
        return text_seal(text=value, purpose=self.purpose)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        return text_open(token=value, purpose=self.purpose)

    def get_lookup(self, lookup_name: str) -> type[Lookup[Any]] | None:
        return IsNull if lookup_name == "isnull" else None

    def get_transform(self, lookup_name: str) -> type[Transform] | None:
        return None
