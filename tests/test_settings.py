"""SPEC §3: one environment-driven settings module; production brings its own secrets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.profile import PRODUCTION

_PROBE = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY[:4])"


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "JWT_SIGNING_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**base, "DJANGO_SETTINGS_MODULE": "gatehouse.settings", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_production_refuses_to_start_without_secrets() -> None:
    result = _run(_PROBE, DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY and JWT_SIGNING_KEY must be set" in result.stderr


def test_production_refuses_one_key_for_sessions_and_tokens() -> None:
    result = _run(_PROBE, DEBUG="false", SECRET_KEY="k" * 60, JWT_SIGNING_KEY="k" * 60)
    assert result.returncode != 0
    assert "must be different keys" in result.stderr


def test_production_starts_with_its_own_secrets() -> None:
    result = _run(_PROBE, DEBUG="false", SECRET_KEY="s" * 60, JWT_SIGNING_KEY="j" * 60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ssss"


def test_production_settings_pass_the_deploy_check() -> None:
    result = _run(
        "import sys; from django.core.management import execute_from_command_line as run;"
        "run(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        DEBUG="false",
        SECRET_KEY="x7#Lq9!vR2@pW4$zT6^mK8&nB1*cD3(eF5)gH0-jY2_uI4+oP6=aS8",
        JWT_SIGNING_KEY="another-long-random-signing-key-for-jwt-0123456789abcdef",
        ALLOWED_HOSTS="gatehouse.example.com",
        GATEHOUSE_ENCRYPTION_KEYS="main:YXQtcmVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmc=",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_collects_static_files_into_a_manifest(tmp_path: Path) -> None:
    # DEBUG off serves WhiteNoise's manifest storage, which refuses a file that points at one
    # that is not there (the vendored Chart.js once named a source map it did not ship).
    result = _run(
        "from django.core.management import execute_from_command_line as run;"
        "run(['manage.py', 'collectstatic', '--noinput', '-v0'])",
        DEBUG="false", SECRET_KEY="s" * 60, JWT_SIGNING_KEY="j" * 60, STATIC_ROOT=str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    for name in ("console/dashboard.js", "console/vendor/chart-4.6.1.umd.min.js", "admin/css/base.css"):
        assert (tmp_path / manifest[name]).is_file()


def test_invalid_executor_is_refused_with_a_clear_message() -> None:
    result = _run(_PROBE, GATEHOUSE_INFERENCE_EXECUTOR="gpu-magic")
    assert result.returncode != 0
    assert "GATEHOUSE_INFERENCE_EXECUTOR must be 'inprocess' or 'celery'" in result.stderr


def test_an_unknown_role_without_password_login_is_refused_at_startup() -> None:
    result = _run(_PROBE, GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES="member, auditors")
    assert result.returncode != 0
    assert "GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES: 'auditors' is not a role" in result.stderr
    assert _run(_PROBE, GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES="member, auditor").returncode == 0


def test_celery_executor_without_a_broker_is_refused() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=settings.BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "gatehouse.settings", "GATEHOUSE_INFERENCE_EXECUTOR": "celery"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "needs a broker" in result.stderr


@pytest.mark.skipif(
    PRODUCTION, reason="asserts the embedded default; the production profile is asserted below"
)
def test_embedded_default_needs_no_other_server() -> None:
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert settings.CELERY_TASK_ALWAYS_EAGER is True
    assert settings.GATEHOUSE_INFERENCE_EXECUTOR == "inprocess"


@pytest.mark.skipif(
    not PRODUCTION, reason="asserts the production profile; the embedded default is asserted above"
)
def test_production_profile_really_uses_postgresql_redis_and_celery(inference_backend: object) -> None:
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache
    from django.db import connection

    from gatehouse.celery import app

    assert connection.vendor == "postgresql"
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert settings.CACHES["default"]["BACKEND"] == "gatehouse.redis_cache.SharedRedisCache"
    assert isinstance(caches["default"], RedisCache)
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    assert settings.GATEHOUSE_INFERENCE_EXECUTOR == "celery"
    assert app.control.ping(timeout=2.0), "no Celery worker answered"


def test_every_scheduled_task_is_a_registered_task() -> None:
    """A typo in CELERY_BEAT_SCHEDULE would fail silently at run time; it fails here."""
    from django.conf import settings

    from gatehouse.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]


@pytest.mark.skipif(not PRODUCTION, reason="the Redis cache is the production profile's")
def test_every_cache_object_of_a_process_shares_one_redis_client() -> None:
    """Under ASGI Django makes a cache object per request context; each must not open its own
    connections (gatehouse.redis_cache)."""
    import threading

    from django.core.cache import caches

    clients = []

    def in_another_context() -> None:
        # A thread has its own cache objects, as each request context does under ASGI.
        caches["default"].set("shared-client-probe", "1", timeout=5)
        clients.append(caches["default"]._cache)

    worker = threading.Thread(target=in_another_context)
    worker.start()
    worker.join()
    assert clients[0] is caches["default"]._cache
    assert caches["default"].get("shared-client-probe") == "1"


# The placeholders deploy/ ships (env.example, the Kubernetes Secret templates): production
# refuses them, and keys too short to be random, before it serves anything.
_GOOD = {"SECRET_KEY": "s" * 60, "JWT_SIGNING_KEY": "j" * 60, "API_KEY_PEPPER": "p" * 40}


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("JWT_SIGNING_KEY", "change-me-to-another-50-random-characters", "placeholder"),
        ("API_KEY_PEPPER", "change-me-to-a-third-random-value", "placeholder"),
        ("SECRET_KEY", "change-me-to-50-random-characters", "placeholder"),
        ("JWT_SIGNING_KEY", "j" * 31, "at least 32 characters"),
        ("API_KEY_PEPPER", "short-pepper", "at least 32 characters"),
    ],
)
def test_production_refuses_placeholder_and_short_keys(name: str, value: str, reason: str) -> None:
    result = _run(_PROBE, DEBUG="false", **{**_GOOD, name: value})
    assert result.returncode != 0
    assert name in result.stderr, result.stderr[-600:]
    assert reason in result.stderr, result.stderr[-600:]


def test_development_keeps_working_with_any_key() -> None:
    result = _run(_PROBE, DEBUG="true", JWT_SIGNING_KEY="short", SECRET_KEY="s" * 60)
    assert result.returncode == 0, result.stderr
