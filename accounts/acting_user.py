"""Who is acting in the current request, for changes detected below the service layer.

A password can be set from many places (the console's forms, `manage.py changepassword`,
code that calls `set_password` and saves): the model notices the change, and the audit
record names whoever was signed in to the console when it happened, else the system.
"""

from contextvars import ContextVar

from accounts.models import User

_acting: ContextVar[User | None] = ContextVar("gatehouse_acting_user", default=None)


def acting_user_set(user: User | None) -> None:
    """The signed-in user of the request now being handled (None between requests)."""
    _acting.set(user)


def acting_user_current() -> User | None:
    """The signed-in user of the current request, or None (a command, a task, an API token)."""
    return _acting.get()
