"""Which configuration the suite runs against.

`make test-embedded` runs on the embedded default; `make test-production` sets
GATEHOUSE_TEST_PROFILE=production with PostgreSQL, Redis and a real Celery worker.
"""

import os

PROFILE = os.environ.get("GATEHOUSE_TEST_PROFILE", "embedded")
PRODUCTION = PROFILE == "production"

if PROFILE not in ("embedded", "production"):
    raise RuntimeError(f"GATEHOUSE_TEST_PROFILE must be 'embedded' or 'production', not {PROFILE!r}")
