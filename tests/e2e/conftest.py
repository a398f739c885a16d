"""One served stack for every end-to-end module (starting one takes seconds)."""

from collections.abc import Iterator

import pytest

from tests.e2e.server import ServedGatehouse, serve


@pytest.fixture(scope="package")
def gatehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGatehouse]:
    # The load tests run 50 chats as one user, each on its own connection: above the default
    # per-user bounds, on purpose.
    served, stop = serve(
        tmp_path_factory.mktemp("served"),
        worker_concurrency=4,
        extra_env={
            "GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER": "64",
            "GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER": "64",
        },
    )
    yield served
    stop()
