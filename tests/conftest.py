"""Fixtures shared by the whole suite: named users per role, the demo model, the worker."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import channel_layers
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.roles import Role
from accounts.services import role_groups_ensure, user_create
from encryption.data_keys import data_keys_forget
from gatehouse.local_cache import local_caches_clear
from inference.models import ModelVersion
from inference.services import demo_embed_model_ensure, demo_model_ensure
from tests.celery_worker import CeleryWorker, database_url
from tests.profile import PRODUCTION, PROFILE
from tests.services_check import tcp_reachable

PASSWORD = "correct-horse-battery-staple"
# The key that signs spend alerts in the suite, where the worker can read it too.
WEBHOOK_SECRET_NAME, WEBHOOK_SECRET = "GATEHOUSE_WEBHOOK_SUITE", "suite-webhook-signing-key"


def pytest_report_header(config: pytest.Config) -> list[str]:
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return [
        f"gatehouse profile: {PROFILE} (database {database}, channel layer {layer}, "
        f"cache {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}, "
        f"inference executor {settings.GATEHOUSE_INFERENCE_EXECUTOR}, broker {settings.CELERY_BROKER_URL})"
    ]


def pytest_sessionstart(session: pytest.Session) -> None:
    """The production profile fails, never skips, when a service it needs is down."""
    if not PRODUCTION:
        return
    problems = [
        problem
        for problem in (
            None
            if "postgresql" in settings.DATABASES["default"]["ENGINE"]
            else "DATABASE_URL is not PostgreSQL",
            None if settings.REDIS_URL else "REDIS_URL is not set",
            tcp_reachable(database_url(settings.DATABASES["default"]), default_port=5432)
            if "postgresql" in settings.DATABASES["default"]["ENGINE"]
            else None,
            tcp_reachable(settings.REDIS_URL, default_port=6379) if settings.REDIS_URL else None,
        )
        if problem
    ]
    if problems:
        pytest.exit("production profile cannot run: " + "; ".join(problems), returncode=3)
    import redis

    # The suite owns this Redis database (see PROD_REDIS_URL in the Makefile).
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say in the output what the production profile really ran against."""
    if not PRODUCTION:
        terminalreporter.write_line(f"gatehouse: ran on the {PROFILE} profile (SQLite, in-memory layer)")
        return
    import psycopg
    import redis

    with psycopg.connect(database_url({**settings.DATABASES["default"], "NAME": "postgres"})) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    redis_version = redis.Redis.from_url(settings.REDIS_URL).info("server")["redis_version"]
    terminalreporter.write_line(
        f"gatehouse: ran on the production profile: PostgreSQL {row[0] if row else '?'}, "
        f"Redis {redis_version} (cache, channel layer, Celery broker), "
        f"generations on a Celery worker process ({_WORKER_STARTS} started)"
    )


_WORKER_STARTS = 0


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> None:
    # PBKDF2's deliberate slowness protects stored passwords, not test data; the e2e
    # servers still hash with the production hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _loopback_upstreams_allowed(settings: Any) -> None:
    """The fake upstreams listen on loopback, and tests run with DEBUG off: allow it, as an
    operator would list an internal upstream (tests of the guard itself set their own list)."""
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def _usage_buffer_per_test(settings: Any) -> Iterator[None]:
    """Usage records wait in a buffer; each test starts with an empty one and flushes it itself."""
    from accounts.services.usage import usage_buffer_clear

    settings.GATEHOUSE_USAGE_FLUSH_SECONDS = 0
    usage_buffer_clear()
    yield
    usage_buffer_clear()


@pytest.fixture(scope="session", autouse=True)
def _flush_past_append_only_triggers() -> Iterator[None]:
    """Transactional tests end by flushing the test database, which the trail's triggers refuse.

    The flush alone steps around them; every test still runs with them in place.
    """
    from django.db import connection

    from audit.triggers import append_only_install, append_only_uninstall

    operations = type(connection.ops)
    original = operations.execute_sql_flush

    def flush(self: Any, sql_list: list[str]) -> None:
        append_only_uninstall(self.connection)
        try:
            original(self, sql_list)
        finally:
            append_only_install(self.connection)

    operations.execute_sql_flush = flush  # type: ignore[method-assign]
    yield
    operations.execute_sql_flush = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _local_caches_forgotten() -> None:
    """Each test starts with empty request-path caches and no remembered data keys: rolled-back
    tests reuse primary keys, and a rollback announces nothing."""
    local_caches_clear()
    data_keys_forget()


@pytest.fixture(autouse=True)
def _audit_subjects_forgotten() -> None:
    """Subjects are remembered per process; a rolled-back test database forgets its rows."""
    from audit.subjects import audit_subject_cache_clear

    audit_subject_cache_clear()


@pytest.fixture(autouse=True)
def audit_checkpoints(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each test seals checkpoints into a sink of its own; the signing key is the suite's."""
    sink = tmp_path_factory.mktemp("checkpoints")
    settings.GATEHOUSE_AUDIT_CHECKPOINT_DIR = sink
    settings.GATEHOUSE_AUDIT_SIGNING_KEY_FILE = audit_signing_key_file(tmp_path_factory)
    return sink


@pytest.fixture(scope="session", autouse=True)
def compliance_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where exports are built: shared by this process and the suite's Celery worker."""
    directory = tmp_path_factory.mktemp("exports")
    settings.GATEHOUSE_COMPLIANCE_EXPORT_DIR = directory
    return directory


def audit_signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signing key for the suite, so what a worker signs verifies in the test process."""
    return tmp_path_factory.getbasetemp() / "audit-signing-key.pem"


@pytest.fixture(scope="session", autouse=True)
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root of the suite's own, so tests never touch a developer's var/models."""
    root = tmp_path_factory.mktemp("models")
    settings.GATEHOUSE_MODEL_ROOT = root
    return root


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    # Channel layers hold asyncio objects bound to the loop of the test that made them.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _no_login_lockouts() -> None:
    """Failed-login counters must not carry from one test to the next.

    Only those keys go: in the production profile the cache shares its Redis database with
    the Celery broker and the channel layer, which a full clear would wipe.
    """
    from django.core.cache import cache

    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith("LocMemCache"):
        cache.clear()
        return
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    for key in client.scan_iter(match="*login-*"):
        client.delete(key)


@pytest.fixture
def roles(db: None) -> None:
    role_groups_ensure()


def _user(username: str, role: Role, **flags: bool) -> User:
    role_groups_ensure()
    return user_create(
        username=username, password=PASSWORD, email=f"{username}@example.com", roles=[role], **flags
    )


@pytest.fixture
def alice(db: None) -> User:
    """The platform admin."""
    return _user("alice", Role.ADMIN, is_staff=True, is_superuser=True)


@pytest.fixture
def bob(db: None) -> User:
    """A member: uses the models open to him."""
    return _user("bob", Role.MEMBER)


@pytest.fixture
def carol(db: None) -> User:
    """An auditor."""
    return _user("carol", Role.AUDITOR)


@pytest.fixture
def olga(db: None) -> User:
    """A compliance officer: handles export and erasure requests for anyone."""
    return _user("olga", Role.COMPLIANCE_OFFICER, is_staff=True)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def demo_version(db: None) -> ModelVersion:
    """demo-tiny, built on first use in the session's model root, registered and promoted."""
    return demo_model_ensure()


@pytest.fixture
def demo_embed_version(db: None) -> ModelVersion:
    """demo-embed (an encoder), built on first use in the session's model root, registered and promoted."""
    return demo_embed_model_ensure()


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: object,
    tmp_path_factory: pytest.TempPathFactory,
    model_root: Path,
    compliance_export_dir: Path,
) -> Iterator[CeleryWorker | None]:
    """A real worker on the test database in the production profile; None on the embedded default."""
    if not PRODUCTION:
        yield None
        return
    env = {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "GATEHOUSE_MODEL_ROOT": str(model_root),
        "GATEHOUSE_COMPLIANCE_EXPORT_DIR": str(compliance_export_dir),
        "GATEHOUSE_AUDIT_SIGNING_KEY_FILE": str(audit_signing_key_file(tmp_path_factory)),
        "GATEHOUSE_REMOTE_ALLOWED_HOSTS": "127.0.0.1",
        WEBHOOK_SECRET_NAME: WEBHOOK_SECRET,
        # Transactional tests flush the data keys between tests: the worker must not remember one.
        "GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS": "0",
    }
    worker = CeleryWorker(env=env, log_path=tmp_path_factory.mktemp("celery") / "worker.log")
    worker.start()
    global _WORKER_STARTS  # noqa: PLW0603 - reported in the terminal summary
    _WORKER_STARTS += 1
    yield worker
    worker.stop()


@pytest.fixture
def inference_backend(celery_worker: CeleryWorker | None) -> CeleryWorker | None:
    """Whatever runs generations in this profile: the in-process pool, or a live worker."""
    if celery_worker is not None and celery_worker.process is not None:
        assert celery_worker.process.poll() is None, f"the Celery worker died:\n{celery_worker.log_tail()}"
    return celery_worker
