"""Gatehouse settings: one module, driven by the environment (SPEC §3).

The embedded default (no variables set) runs on SQLite, an in-memory channel layer, a
local-memory cache and an in-process inference executor, so `make run` needs no other
server. Setting DATABASE_URL and REDIS_URL switches to the production configuration.
"""

import os
import sys
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

from gatehouse.checks import password_login_refusals, secret_refusals
from gatehouse.dev_secrets import dev_secrets_load
from gatehouse.process_priority import cpu_list_parse
from sso.providers import oidc_providers_from_environ

# Lets annotations such as ModelAdmin[Model] work at run time, not only under mypy.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

# --- secrets: separate keys for sessions and JWTs; production must bring its own -----------
_secret_names = ("SECRET_KEY", "JWT_SIGNING_KEY", "API_KEY_PEPPER")
if DEBUG:
    _dev = dev_secrets_load(path=VAR_DIR / "dev-secrets.json")
    _secrets = {name: env.str(name, default=_dev[name]) for name in _secret_names}
else:
    _missing = [name for name in ("SECRET_KEY", "JWT_SIGNING_KEY") if not env.str(name, default="")]
    if _missing:
        raise ImproperlyConfigured(
            f"{' and '.join(_missing)} must be set in the environment when DEBUG is off."
        )
    _secrets = {name: env.str(name, default="") for name in _secret_names}
    if not _secrets["API_KEY_PEPPER"]:
        _secrets["API_KEY_PEPPER"] = _secrets["SECRET_KEY"]
    # deploy/'s placeholders and short keys never sign anything (gatehouse.checks, which the
    # system checks repeat for `check --deploy`).
    _unsafe = secret_refusals(_secrets)
    if _unsafe:
        raise ImproperlyConfigured(" ".join(_unsafe))
    if _secrets["SECRET_KEY"] == _secrets["JWT_SIGNING_KEY"]:
        raise ImproperlyConfigured("SECRET_KEY and JWT_SIGNING_KEY must be different keys.")
SECRET_KEY = _secrets["SECRET_KEY"]
JWT_SIGNING_KEY = _secrets["JWT_SIGNING_KEY"]
API_KEY_PEPPER = _secrets["API_KEY_PEPPER"]
# Rotation (docs/production.md): old keys, comma-separated, still verify while clients move on.
# Sessions, password-reset links and signed values made under an old SECRET_KEY stay valid;
# an API key hashed under an old pepper still works and is re-hashed under the current one.
# /metrics names every model, so with DEBUG off it answers only `Authorization: Bearer <token>`
# or a scraper whose own address (the direct peer, never X-Forwarded-For) is in one of the
# allowed networks (CIDRs); anyone else gets 401 (token set) or 403. With DEBUG on and no token
# it is open. Keep the route off the public ingress either way (docs/production.md).
GATEHOUSE_METRICS_TOKEN = env.str("GATEHOUSE_METRICS_TOKEN", default="")
GATEHOUSE_METRICS_ALLOWED_NETWORKS = env.list("GATEHOUSE_METRICS_ALLOWED_NETWORKS", default=[])
for _network in GATEHOUSE_METRICS_ALLOWED_NETWORKS:
    try:
        ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"GATEHOUSE_METRICS_ALLOWED_NETWORKS: {_network!r} is not an IP address or CIDR range "
            "(e.g. 10.0.0.0/8)."
        ) from None
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
API_KEY_PEPPER_FALLBACKS = env.list("API_KEY_PEPPER_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=["http://127.0.0.1:8000", "http://localhost:8000"]
)

INSTALLED_APPS = [
    "gatehouse.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "guardian",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_celery_beat",
    "channels",
    "gatehouse.apps.GatehouseConfig",
    "accounts",
    "audit",
    "inference",
    "spend",
    "guardrails",
    "sso",
    "scim",
    "encryption",
]

MIDDLEWARE = [
    "gatehouse.middleware.RequestIdMiddleware",
    "gatehouse.middleware.RequestMetricsMiddleware",
    "gatehouse.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gatehouse.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.ConsoleSessionMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gatehouse.urls"
WSGI_APPLICATION = "gatehouse.wsgi.application"
ASGI_APPLICATION = "gatehouse.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database --------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and IMMEDIATE transactions let the ASGI server's threads write without
    # "database is locked" errors under light concurrency.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too: an in-memory database shares one cache whose table locks fail at
    # once under concurrent connections, which is not how a served SQLite database behaves.
    # GATEHOUSE_TEST_SQLITE names another file, so two suites can run from one checkout.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("GATEHOUSE_TEST_SQLITE", default=str(VAR_DIR / "test-db.sqlite3"))
    }
else:
    # Behind a transaction-pooling PgBouncer a cursor cannot outlive its statement: then say so,
    # and the streamed reads (audit verification, exports) fetch their rows in one go instead.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool(
        "DATABASE_DISABLE_SERVER_SIDE_CURSORS", default=False
    )
    # Statements that ask for it (the audit trail's INSERT, `execute(..., prepare=True)`) are
    # prepared by the server once per connection; nothing else is (Django's own cursors bind
    # values client-side and are never prepared, and no count reaches this threshold).
    # Django's default (None) turns preparing off altogether, as a PgBouncer in transaction
    # mode needs: then it stays off.
    if not DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"]:
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1
    # A pool per process (Django's, on psycopg_pool). Under ASGI, persistent connections
    # (CONN_MAX_AGE) are unsafe and each request would open a connection of its own: a few
    # milliseconds of handshake that every request paid. 0 turns the pool off.
    _pool_size = env.int("DATABASE_POOL_MAX_SIZE", default=20)
    if _pool_size:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": _pool_size,
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        }

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    # Object permissions: the `use_model` grant on one model, to a user or a team.
    "guardian.backends.ObjectPermissionBackend",
]
# Gatehouse never grants anything to anonymous visitors; no guardian anonymous user.
ANONYMOUS_USER_NAME = None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Redis: cache, channel layer, Celery broker ------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "gatehouse.redis_cache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gatehouse",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, which races the
                # layer's 5 s blocking BZPOPMIN and kills idle consumers; wait longer than
                # the pop, but not forever, so a dead Redis is still noticed.
                # Each command borrows a pooled connection; redis-py 8 caps a pool at 100 and
                # then refuses (no waiting), so a burst of 100 websocket handshakes (each a
                # group_add) was turned away with 403. Redis itself takes 10,000 clients.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "socket_connect_timeout": 5,
                        "max_connections": env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=1000),
                    }
                ],
                "prefix": "gatehouse:channels",
                "capacity": 1000,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
# Without a broker, tasks run inline: the embedded default needs no worker process.
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL == "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Generations go to a queue per model, `inference.<model name>` (see inference.dispatch):
# a GPU worker consumes the queues of the models it serves.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A generation is long: a worker takes one at a time per thread, so tasks it cannot start yet
# stay in the broker, where the queue bound (GATEHOUSE_INFERENCE_MAX_QUEUE) counts them.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Beat keeps its schedule in the database (editable in the console); these entries seed it.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "object-permissions-sweep": {
        "task": "accounts.tasks.object_permissions_sweep",
        "schedule": timedelta(hours=24),
    },
    "usage-records-flush": {
        "task": "accounts.tasks.usage_records_flush",
        "schedule": timedelta(seconds=10),
    },
    "usage-rollup-hourly": {
        "task": "accounts.tasks.usage_rollup",
        "schedule": timedelta(minutes=5),
        "args": ("hour",),
    },
    "usage-rollup-daily": {
        "task": "accounts.tasks.usage_rollup",
        "schedule": timedelta(hours=1),
        "args": ("day",),
    },
    "quota-counters-sweep": {
        "task": "accounts.tasks.quota_counters_sweep",
        "schedule": timedelta(hours=1),
    },
    "spend-alerts-check": {
        "task": "spend.tasks.spend_alerts_check",
        "schedule": timedelta(minutes=1),
    },
    "compliance-requests-sweep": {
        "task": "audit.tasks.compliance_requests_sweep",
        "schedule": timedelta(minutes=5),
    },
    "retention-purge": {
        "task": "audit.tasks.retention_purge",
        "schedule": timedelta(hours=24),
    },
    "audit-checkpoint": {
        "task": "audit.tasks.audit_checkpoint_write",
        "schedule": timedelta(seconds=env.int("GATEHOUSE_AUDIT_CHECKPOINT_SECONDS", default=300)),
    },
    # Rotates data keys when due and re-encrypts off retired ones (encryption.services).
    "encryption-maintain": {
        "task": "encryption.tasks.encryption_maintain",
        "schedule": timedelta(minutes=15),
    },
    # Seals rows left unsealed by a process that died, even while no other process writes.
    "audit-seal": {
        "task": "audit.tasks.audit_seal_pending",
        "schedule": timedelta(seconds=10),
    },
    # Walks the whole trail and records the run, which /metrics exports for the alerts.
    "audit-verify": {
        "task": "audit.tasks.audit_verify",
        "schedule": timedelta(hours=env.int("GATEHOUSE_AUDIT_VERIFY_HOURS", default=24)),
    },
}

# --- audit -------------------------------------------------------------------------------------
# Audit rows are written unsealed (no lock on the request path) and linked into the hash chain
# by a sealer thread in each process that writes (audit.sealer), about this many seconds after
# they commit. 0 starts no thread: the test suite seals explicitly; a deployment may run
# `manage.py audit_seal --loop` instead.
GATEHOUSE_AUDIT_SEAL_INTERVAL = env.float(
    "GATEHOUSE_AUDIT_SEAL_INTERVAL", default=0.0 if "pytest" in sys.modules else 1.0
)
# On PostgreSQL, a chat served on the event loop (a remote model) appends its audit row on a
# connection of the loop's own, one INSERT, concurrent chats' rows together (audit.appender),
# instead of a thread's transaction. Off under the test suite, whose tests roll back their
# transactions on a connection the appender's could not see; tests turn it on where they commit.
GATEHOUSE_AUDIT_DIRECT_APPENDS = env.bool(
    "GATEHOUSE_AUDIT_DIRECT_APPENDS", default="pytest" not in sys.modules
)
# Signed checkpoints of the chain's head go here: a directory by default; in production a
# write-once mount (or one synced to object storage with retention lock) the app cannot rewrite.
GATEHOUSE_AUDIT_CHECKPOINT_DIR = Path(
    env.str("GATEHOUSE_AUDIT_CHECKPOINT_DIR", default=str(VAR_DIR / "audit" / "checkpoints"))
)
# Ed25519 key that signs checkpoints and exports: base64 of its 32 private bytes. Unset, a key
# is generated once into GATEHOUSE_AUDIT_SIGNING_KEY_FILE (fine for one machine, not for many).
GATEHOUSE_AUDIT_SIGNING_KEY = env.str("GATEHOUSE_AUDIT_SIGNING_KEY", default="")
# After rotating the signing key: the old public keys (base64, comma-separated; printed by
# `manage.py audit_public_key`), so checkpoints sealed before the rotation still verify.
GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS = env.list("GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS", default=[])
GATEHOUSE_AUDIT_SIGNING_KEY_FILE = Path(
    env.str("GATEHOUSE_AUDIT_SIGNING_KEY_FILE", default=str(VAR_DIR / "audit" / "signing-key.pem"))
)

# --- encryption at rest (encryption/) ----------------------------------------------------------
# Stored conversations (titles and messages) and data-export files are encrypted under data keys,
# which are stored wrapped under a master key. Master keys: `<id>:<base64 of 32 random bytes>`,
# comma-separated, the first being the primary (rotation: put a new one first; see
# docs/production.md). Unset, one is generated into GATEHOUSE_ENCRYPTION_KEY_FILE (one machine only).
GATEHOUSE_ENCRYPTION_KEYS = env.str("GATEHOUSE_ENCRYPTION_KEYS", default="")
GATEHOUSE_ENCRYPTION_KEY_FILE = Path(
    env.str("GATEHOUSE_ENCRYPTION_KEY_FILE", default=str(VAR_DIR / "encryption-master-key"))
)
# How long a process keeps using the current data key before it looks again: a rotation reaches
# every process within this time. The suite (and its worker) look every time: its tests delete
# keys between them.
GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS = env.float(
    "GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS", default=0.0 if "pytest" in sys.modules else 60.0
)
# A data key older than this is replaced, and what it sealed re-encrypted in the background.
GATEHOUSE_ENCRYPTION_DATA_KEY_DAYS = env.int("GATEHOUSE_ENCRYPTION_DATA_KEY_DAYS", default=90)

# --- compliance and retention --------------------------------------------------------------------
# Built exports wait here for download: a volume shared by the workers and the web processes.
GATEHOUSE_COMPLIANCE_EXPORT_DIR = Path(
    env.str("GATEHOUSE_COMPLIANCE_EXPORT_DIR", default=str(VAR_DIR / "exports"))
)
GATEHOUSE_COMPLIANCE_QUEUE = env.str("GATEHOUSE_COMPLIANCE_QUEUE", default="compliance")
# How long a finished export may be downloaded; the file is deleted after.
GATEHOUSE_COMPLIANCE_DOWNLOAD_HOURS = env.int("GATEHOUSE_COMPLIANCE_DOWNLOAD_HOURS", default=72)
# A running request whose heartbeat is older than this is taken to be lost with its worker.
GATEHOUSE_COMPLIANCE_STALE_SECONDS = env.int("GATEHOUSE_COMPLIANCE_STALE_SECONDS", default=600)
GATEHOUSE_COMPLIANCE_MAX_ATTEMPTS = env.int("GATEHOUSE_COMPLIANCE_MAX_ATTEMPTS", default=3)
# After an export of a person is built, a new one for them waits this long (0: no wait); the
# finished one is answered meanwhile.
GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS = env.int(
    "GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS", default=3600
)
# A pause between the sections of an export, to spread a large request's load on the database.
GATEHOUSE_COMPLIANCE_SECTION_PAUSE_SECONDS = env.float(
    "GATEHOUSE_COMPLIANCE_SECTION_PAUSE_SECONDS", default=0.0
)
# Retention, in days (0 keeps forever): stored conversations, and raw usage rows (their hourly
# and daily rollups stay).
GATEHOUSE_RETENTION_CONVERSATION_DAYS = env.int("GATEHOUSE_RETENTION_CONVERSATION_DAYS", default=365)
GATEHOUSE_RETENTION_USAGE_RECORD_DAYS = env.int("GATEHOUSE_RETENTION_USAGE_RECORD_DAYS", default=90)

# --- inference ---------------------------------------------------------------------------------
GATEHOUSE_MODEL_ROOT = Path(env.str("GATEHOUSE_MODEL_ROOT", default=str(VAR_DIR / "models")))
GATEHOUSE_DEVICE = env.str("GATEHOUSE_DEVICE", default="auto")
# "inprocess": generations run on a thread pool inside the web process (embedded default).
# "celery": generations run on Celery workers (GPU nodes) and stream back over the channel layer.
GATEHOUSE_INFERENCE_EXECUTOR = env.str("GATEHOUSE_INFERENCE_EXECUTOR", default="inprocess")
if GATEHOUSE_INFERENCE_EXECUTOR not in ("inprocess", "celery"):
    raise ImproperlyConfigured("GATEHOUSE_INFERENCE_EXECUTOR must be 'inprocess' or 'celery'.")
if GATEHOUSE_INFERENCE_EXECUTOR == "celery" and CELERY_TASK_ALWAYS_EAGER:
    raise ImproperlyConfigured(
        "GATEHOUSE_INFERENCE_EXECUTOR=celery needs a broker: set REDIS_URL or CELERY_BROKER_URL."
    )
# Remote (OpenAI-compatible) models: "web" calls them from the web process's own pool (I/O only,
# no broker hop per request); "worker" sends them through Celery like local models.
GATEHOUSE_REMOTE_GENERATION = env.str("GATEHOUSE_REMOTE_GENERATION", default="web")
if GATEHOUSE_REMOTE_GENERATION not in ("web", "worker"):
    raise ImproperlyConfigured("GATEHOUSE_REMOTE_GENERATION must be 'web' or 'worker'.")
# The request path keeps who a credential belongs to, what a user may run and which quota
# policies apply in each process (gatehouse.local_cache), dropped everywhere on any change;
# this bounds an entry's life should an announcement be lost.
GATEHOUSE_LOCAL_CACHE_SECONDS = env.float("GATEHOUSE_LOCAL_CACHE_SECONDS", default=60.0)
# Separation of duties: whoever registered a version may not promote it or start its canary.
GATEHOUSE_MODEL_SEPARATION_OF_DUTIES = env.bool("GATEHOUSE_MODEL_SEPARATION_OF_DUTIES", default=False)
# A generation that sends nothing for this long is given up as lost (worker dead, or no worker
# serving the model): the client gets `unavailable`. The first event allows for a model load.
GATEHOUSE_GENERATION_START_TIMEOUT = env.float("GATEHOUSE_GENERATION_START_TIMEOUT", default=120.0)
# Local generations send a heartbeat every 2 s even while they wait, so 10 s of silence means
# the worker is gone.
GATEHOUSE_GENERATION_STALL_TIMEOUT = env.float("GATEHOUSE_GENERATION_STALL_TIMEOUT", default=10.0)


def held_models_parse(*, raw: str, debug: bool, under_tests: bool) -> tuple[str, ...]:
    """GATEHOUSE_TEST_HOLD_MODELS: a test hook, refused with DEBUG off outside the test suite."""
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if names and not (debug or under_tests):
        raise ImproperlyConfigured(
            "GATEHOUSE_TEST_HOLD_MODELS is a test hook: it holds generations until they are "
            "cancelled, so it is refused with DEBUG off outside the test suite. Unset it."
        )
    return names


# Test hook: a generation of one of these models (comma-separated names) stops after its first
# tokens until it is cancelled (30 s at most), so a test's cancel always lands mid-generation.
# Empty by default; honoured with DEBUG on or under the test suite (which sets
# GATEHOUSE_TEST_PROFILE for the stacks it serves).
GATEHOUSE_TEST_HOLD_MODELS = held_models_parse(
    raw=env.str("GATEHOUSE_TEST_HOLD_MODELS", default=""),
    debug=DEBUG,
    under_tests="pytest" in sys.modules or "GATEHOUSE_TEST_PROFILE" in os.environ,
)
# Loaded models share this much memory (weights, estimated from their files); least recently
# used ones are unloaded first.
GATEHOUSE_ENGINE_MEMORY_BUDGET_MB = env.int("GATEHOUSE_ENGINE_MEMORY_BUDGET_MB", default=16 * 1024)
# The most bytes of text one token may stand for, where a model's own vocabulary has not said
# (remote versions; local ones until they first load). Messages of more bytes than
# (context - max_tokens) times this cannot fit and are refused before anything tokenizes them.
# Keep it at least the longest token of any model served, or a prompt that fits may be refused.
GATEHOUSE_MAX_BYTES_PER_TOKEN = env.int("GATEHOUSE_MAX_BYTES_PER_TOKEN", default=256)
if GATEHOUSE_MAX_BYTES_PER_TOKEN < 1:
    raise ImproperlyConfigured("GATEHOUSE_MAX_BYTES_PER_TOKEN must be at least 1.")
# Models a worker loads and exercises as it starts, so the first request does not wait.
GATEHOUSE_WARM_MODELS = env.list("GATEHOUSE_WARM_MODELS", default=[])
# On shutdown, how long the web process waits for its own (in-process) generations to end.
# Keep it, plus uvicorn's --timeout-graceful-shutdown, under the pod's grace period.
GATEHOUSE_SHUTDOWN_DRAIN_SECONDS = env.float("GATEHOUSE_SHUTDOWN_DRAIN_SECONDS", default=20.0)
# Remote OpenAI-compatible upstreams (vLLM, TGI, Ollama, llama.cpp server).
GATEHOUSE_REMOTE_CONNECT_TIMEOUT = env.float("GATEHOUSE_REMOTE_CONNECT_TIMEOUT", default=5.0)
GATEHOUSE_REMOTE_READ_TIMEOUT = env.float("GATEHOUSE_REMOTE_READ_TIMEOUT", default=60.0)
GATEHOUSE_REMOTE_MAX_RETRIES = env.int("GATEHOUSE_REMOTE_MAX_RETRIES", default=2)
GATEHOUSE_REMOTE_BREAKER_THRESHOLD = env.int("GATEHOUSE_REMOTE_BREAKER_THRESHOLD", default=5)
GATEHOUSE_REMOTE_BREAKER_RESET_SECONDS = env.float("GATEHOUSE_REMOTE_BREAKER_RESET_SECONDS", default=30.0)
# Private, loopback and unique-local addresses an upstream (or any URL a user supplies) may
# reach: host names or CIDR ranges, comma-separated. Link-local and cloud metadata addresses
# are refused whatever this says; with DEBUG on, loopback is allowed without it (gatehouse.outbound).
GATEHOUSE_REMOTE_ALLOWED_HOSTS = env.list("GATEHOUSE_REMOTE_ALLOWED_HOSTS", default=[])
# Concurrent requests to one local model are batched, up to this many rows at once.
# "continuous": requests join and leave the running batch between decoding steps (models
# whose cache allows it; others fall back to static). "static": whole batches, each one
# `generate()` call; a batch starts once no new request arrived for the gather time (at most
# ten times that after the first); requests that arrive while a batch runs wait for the next
# one, unless they have waited the overflow time, which starts another batch alongside, up to
# the concurrent-batches bound.
GATEHOUSE_ENGINE_BATCHING = env.str("GATEHOUSE_ENGINE_BATCHING", default="continuous")
if GATEHOUSE_ENGINE_BATCHING not in ("continuous", "static"):
    raise ImproperlyConfigured("GATEHOUSE_ENGINE_BATCHING must be 'continuous' or 'static'.")
GATEHOUSE_ENGINE_MAX_BATCH_SIZE = env.int("GATEHOUSE_ENGINE_MAX_BATCH_SIZE", default=8)
# torch's threads for models on the CPU; 0: every core but one, left to the rest of the process.
GATEHOUSE_ENGINE_CPU_THREADS = env.int("GATEHOUSE_ENGINE_CPU_THREADS", default=0)
GATEHOUSE_ENGINE_BATCH_GATHER_MS = env.float("GATEHOUSE_ENGINE_BATCH_GATHER_MS", default=10.0)
GATEHOUSE_ENGINE_BATCH_OVERFLOW_MS = env.float("GATEHOUSE_ENGINE_BATCH_OVERFLOW_MS", default=250.0)
GATEHOUSE_ENGINE_CONCURRENT_BATCHES = env.int("GATEHOUSE_ENGINE_CONCURRENT_BATCHES", default=2)
# How much lower than the web tier generations run on the CPU (a nice value added, 0 to 19;
# gatehouse.process_priority): every thread of a Celery worker, and the embedded executor's
# threads. Where web and generations share a host, a cheap request then waits for no decode
# step; where they do not, it changes nothing. 0 leaves the priority alone.
GATEHOUSE_WORKER_NICENESS = env.int("GATEHOUSE_WORKER_NICENESS", default=10)
if not 0 <= GATEHOUSE_WORKER_NICENESS <= 19:  # noqa: PLR2004 - the range of a nice value
    raise ImproperlyConfigured("GATEHOUSE_WORKER_NICENESS must be between 0 and 19.")
# Opt-in, Linux: a Celery worker's threads also run in the idle scheduling class, so a woken
# web thread takes the core at once instead of after a decode step's time slice. Measured on one
# 2-core host: a cheap GET's p99 beside four streams 2.97 ms against 3.60 ms at nice 10 alone,
# but one stream through the stack 0.92 and 1.15 of raw generate() against 1.32 and 1.37 (the
# kernel counts a core running only idle-class threads as free and wakes other work onto it).
GATEHOUSE_WORKER_SCHED_IDLE = env.bool("GATEHOUSE_WORKER_SCHED_IDLE", default=False)
# Linux: the CPUs a Celery worker's threads run on ("1", "2-5", "0,2-3"; empty: any). Where web
# and worker share a host, keeping the worker off one core leaves that core to the web tier and
# keeps the decode thread on a core of its own. Measured on one 2-core host, worker on CPU 1:
# eight streams through the stack 0.76 to 0.78 of the engine's own batched rate, against 0.62 to
# 0.68 unconfined (four alternated pairs). Leave it empty where the worker has its own
# container or machine.
try:
    GATEHOUSE_WORKER_CPUS = cpu_list_parse(env.str("GATEHOUSE_WORKER_CPUS", default=""))
except ValueError as error:
    raise ImproperlyConfigured(f"GATEHOUSE_WORKER_CPUS: {error}") from None
# Threads running generations in the web process (embedded default). Enough to fill the
# batches above; each mostly waits on its batch and relays tokens.
GATEHOUSE_INPROCESS_WORKERS = env.int("GATEHOUSE_INPROCESS_WORKERS", default=16)
# Generations waiting for a worker, per model; past it a request is refused at once with
# `unavailable` (HTTP 503) instead of queueing without bound.
GATEHOUSE_INFERENCE_MAX_QUEUE = env.int("GATEHOUSE_INFERENCE_MAX_QUEUE", default=64)
# Websocket chats are stored as conversations their owners can continue, read and delete.
# Chats through /v1/chat/completions are stored only when this is on (default: metadata only,
# in the audit trail).
GATEHOUSE_STORE_API_CONVERSATIONS = env.bool("GATEHOUSE_STORE_API_CONVERSATIONS", default=False)
# Quotas (accounts.services.quotas): when their store is down, token quotas always fail
# closed (503); request-rate limits fail open only with this on.
GATEHOUSE_RATE_LIMIT_FAIL_OPEN = env.bool("GATEHOUSE_RATE_LIMIT_FAIL_OPEN", default=False)
# The currency of every price, cost and budget (ISO 4217); prices are per million tokens.
GATEHOUSE_CURRENCY = env.str("GATEHOUSE_CURRENCY", default="USD")
# A team's day of spend past this multiple of its daily average over the days before is alerted.
GATEHOUSE_SPEND_SPIKE_MULTIPLE = env.float("GATEHOUSE_SPEND_SPIKE_MULTIPLE", default=3.0)
GATEHOUSE_SPEND_SPIKE_DAYS = env.int("GATEHOUSE_SPEND_SPIKE_DAYS", default=7)

# Mail (spend alerts to a budget's owner): printed while developing, SMTP in production.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="gatehouse@localhost")
# A quota settlement or chat-slot release that meets Redis down is retried this long
# (gatehouse.deferred); after that the lease it guards expires on its own.
GATEHOUSE_DEFERRED_GIVE_UP_SECONDS = env.float("GATEHOUSE_DEFERRED_GIVE_UP_SECONDS", default=600.0)
# Usage records wait in a buffer and are written in bulk: by Celery beat (every 10 s) where
# REDIS_URL is set, by a thread of the process this often otherwise (0: only when asked).
GATEHOUSE_USAGE_FLUSH_SECONDS = env.float("GATEHOUSE_USAGE_FLUSH_SECONDS", default=2.0)
# Chats one user may have running at once, over every connection and /v1 (SPEC §6).
GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER = env.int("GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER", default=8)
# Concurrent chats one websocket connection may run (SPEC §6).
GATEHOUSE_WS_MAX_CONCURRENT_CHATS = env.int("GATEHOUSE_WS_MAX_CONCURRENT_CHATS", default=4)
# Largest websocket text frame accepted, in bytes. The ASGI server refuses larger frames
# before reading them (uvicorn --ws-max-size, inference.protocol.SERVER_MAX_FRAME_BYTES):
# raising this past that needs the server's limit raised too.
GATEHOUSE_WS_MAX_FRAME_BYTES = env.int("GATEHOUSE_WS_MAX_FRAME_BYTES", default=64 * 1024)
# Chat websockets one user may hold open at once, over every web process; one more is
# refused at the handshake (error `rate_limited`, close 4429).
GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER = env.int("GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER", default=16)
if GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER < 1:
    raise ImproperlyConfigured("GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER must be at least 1.")
# Messages one connection may send per window: past it `rate_limited` errors; a client that
# keeps sending a whole window's worth more is a flood and is closed (1008).
GATEHOUSE_WS_MESSAGES_PER_WINDOW = env.int("GATEHOUSE_WS_MESSAGES_PER_WINDOW", default=30)
GATEHOUSE_WS_MESSAGE_WINDOW_SECONDS = env.float("GATEHOUSE_WS_MESSAGE_WINDOW_SECONDS", default=10.0)
# A connection with no client frame and no running chat for this long is closed (4408).
# Dead peers are found sooner by the server's protocol pings (uvicorn: every 20 s).
GATEHOUSE_WS_IDLE_TIMEOUT = env.float("GATEHOUSE_WS_IDLE_TIMEOUT", default=300.0)

# --- REST API and JWT --------------------------------------------------------------------------
# Failed logins within a window, counted as each attempt starts (accounts.login_throttle); a
# lockout then expires. PER_ACCOUNT is per account *and client address*: guesses from one
# address lock the account there only. PER_IP: any accounts from one address. PER_ACCOUNT_GLOBAL:
# one account from every address together, a ceiling for guesses spread over many addresses.
GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT = env.int("GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT", default=5)
GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP = env.int("GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP", default=20)
GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT_GLOBAL = env.int(
    "GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT_GLOBAL", default=100
)
GATEHOUSE_LOGIN_FAILURE_WINDOW_SECONDS = env.int("GATEHOUSE_LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)
GATEHOUSE_LOGIN_LOCKOUT_SECONDS = env.int("GATEHOUSE_LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# A login (JWT session family or console session) ends this many seconds after it began,
# however often it is refreshed or used (accounts.session_lifetime).
GATEHOUSE_SESSION_MAX_AGE = env.int("GATEHOUSE_SESSION_MAX_AGE", default=30 * 24 * 3600)
if GATEHOUSE_SESSION_MAX_AGE <= 0:
    raise ImproperlyConfigured("GATEHOUSE_SESSION_MAX_AGE must be a positive number of seconds.")

# SCIM 2.0 provisioning (/scim/v2/): the most resources one list page returns.
GATEHOUSE_SCIM_MAX_PAGE_SIZE = env.int("GATEHOUSE_SCIM_MAX_PAGE_SIZE", default=100)
if GATEHOUSE_SCIM_MAX_PAGE_SIZE <= 0:
    raise ImproperlyConfigured("GATEHOUSE_SCIM_MAX_PAGE_SIZE must be a positive number.")
# TOTP for the console: always asked of enrolled users; required of admins when this is on.
GATEHOUSE_ADMIN_2FA_REQUIRED = env.bool("GATEHOUSE_ADMIN_2FA_REQUIRED", default=not DEBUG)
# Password login: off for everyone, or for holders of the listed roles; the break-glass
# accounts always keep it (accounts.password_login). Checked here, so a typo never starts.
GATEHOUSE_PASSWORD_LOGIN = env.bool("GATEHOUSE_PASSWORD_LOGIN", default=True)
GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES = [
    name.strip() for name in env.list("GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES", default=[])
]
GATEHOUSE_BREAK_GLASS_USERS = [
    name.strip()
    for name in env.list(
        "GATEHOUSE_BREAK_GLASS_USERS", default=[env.str("GATEHOUSE_ADMIN_USERNAME", default="") or "admin"]
    )
]
for _refusal in password_login_refusals(
    disabled_roles=GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES, break_glass_users=GATEHOUSE_BREAK_GLASS_USERS
):
    raise ImproperlyConfigured(_refusal)
OTP_TOTP_ISSUER = "Gatehouse"

# Single sign-on: one OpenID Connect provider per GATEHOUSE_OIDC_<NAME>_ISSUER (sso.providers).
GATEHOUSE_OIDC_PROVIDERS = oidc_providers_from_environ(os.environ)
# A provider's signing keys are fetched again after this long, and at once for an unknown key id
# (at most once a minute per provider, so forged key ids cannot make Gatehouse hammer it).
GATEHOUSE_OIDC_JWKS_MAX_AGE = env.int("GATEHOUSE_OIDC_JWKS_MAX_AGE", default=3600)
# Clock skew forgiven on ID tokens' exp/iat/nbf, and the oldest ID token the API exchanges.
GATEHOUSE_OIDC_LEEWAY_SECONDS = env.int("GATEHOUSE_OIDC_LEEWAY_SECONDS", default=60)
GATEHOUSE_OIDC_EXCHANGE_MAX_AGE = env.int("GATEHOUSE_OIDC_EXCHANGE_MAX_AGE", default=600)

# Client IP comes from X-Forwarded-For only when the direct peer is one of these proxies.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.authentication.HasScope",
    ],
    # DRF's defaults, with a JSON parser that answers too-deep nesting and too-long numbers
    # with 400 like any other unreadable body (gatehouse.json_parsing).
    "DEFAULT_PARSER_CLASSES": [
        "gatehouse.json_parsing.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "gatehouse.api_errors.api_exception_handler",
}
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "AUDIENCE": "gatehouse-api",
    "ISSUER": "gatehouse",
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "LEEWAY": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gatehouse API",
    "DESCRIPTION": "Governed access to large language models.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "gatehouse.api_schema.error_responses_document",
    ],
}

# --- static files, i18n ------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- security headers (production settings pass `manage.py check --deploy`) --------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    # /healthz and /readyz are probed over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# One JSON object per line in production (text while developing), each with the request id;
# credentials masked in every line (gatehouse.log_format). uvicorn's own loggers are taken
# over, so its access log is JSON and masked too.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
_LOG_HANDLER = {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO"), "propagate": False}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "gatehouse.log_format.RequestIdFilter"},
        "mask_credentials": {"()": "gatehouse.log_format.MaskCredentialsFilter"},
    },
    "formatters": {
        "json": {"()": "gatehouse.log_format.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "mask_credentials"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # httpx logs every upstream request at INFO: the chat's audit row and metrics say more,
        # and formatting the line was near 3% of the server's time on a streamed chat.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "uvicorn": _LOG_HANDLER,
        "uvicorn.error": _LOG_HANDLER,
        "uvicorn.access": _LOG_HANDLER,
    },
}
