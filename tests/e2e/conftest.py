"""One served stack for every end-to-end module (starting one takes seconds)."""

from collections.abc import Iterator

import pytest

from tests.e2e.server import ServedGatehouse, serve


@pytest.fixture(scope="package")
def gatehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGatehouse]:
    served, stop = serve(tmp_path_factory.mktemp("served"), worker_concurrency=4)
    yield served
    stop()
