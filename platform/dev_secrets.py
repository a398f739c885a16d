"""Secrets for development only: generated once per checkout and kept out of git.

Production (DEBUG off) never reaches this module: settings refuse to start without
SECRET_KEY and JWT_SIGNING_KEY from the environment.
"""

import json
import secrets
from pathlib import Path

_KEYS = ("SECRET_KEY", "JWT_SIGNING_KEY", "API_KEY_PEPPER")


def dev_secrets_load(*, path: Path) -> dict[str, str]:
    """Return the dev secrets stored at `path`, creating any that are missing.

    A file (rather than a fresh key per process) keeps sessions and tokens valid across
    restarts and shared between the web server and a Celery worker on the same checkout.
    """
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    missing = [key for key in _KEYS if key not in stored]
    if missing:
        for key in missing:
            stored[key] = secrets.token_urlsafe(50)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
    return stored
