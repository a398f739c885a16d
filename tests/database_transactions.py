"""Counting the database transactions Django opens, in whichever thread it opens them."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.db.backends.utils import CursorWrapper


@dataclass
class Transactions:
    """What Django sent the database, whichever thread sent it: the transactions it opened, and
    the queries it ran in autocommit (each a transaction of its own)."""

    opened: int = 0
    autocommitted: list[str] = field(default_factory=list)


@contextmanager
def transactions_counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Transactions]:
    """While within: each outermost `transaction.atomic()` Django enters, and each query it runs
    outside one, in any thread (a thread's connection is its own: the counts are per class)."""
    counted = Transactions()
    enter, execute = transaction.Atomic.__enter__, CursorWrapper.execute

    def atomic_entered(self: transaction.Atomic) -> None:
        counted.opened += not transaction.get_connection(self.using).in_atomic_block
        enter(self)

    def executed(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        if not self.db.in_atomic_block:
            counted.autocommitted.append(sql[:60])
        return execute(self, sql, params)

    with monkeypatch.context() as patched:
        patched.setattr(transaction.Atomic, "__enter__", atomic_entered)
        patched.setattr(CursorWrapper, "execute", executed)
        yield counted
