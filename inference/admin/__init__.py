"""The console's inference pages: models and versions (registry), and who may use them (access)."""

from inference.admin import access, registry

__all__ = ["access", "registry"]
