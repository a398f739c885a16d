"""What the provider knows of each person beyond Django's user: groups and sign-in methods."""

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {}
