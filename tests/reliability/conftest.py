"""The reliability suite: faults, fuzzing, abuse and a soak, on the production configuration.

`make test-reliability` runs it (and `make test`, hence CI). Every module here says
`pytestmark = pytest.mark.reliability`, which the ordinary runs leave out; tests elsewhere
that kill real parts carry the mark too, so the suite is everything so marked.
"""

import pytest

from tests.profile import PRODUCTION


@pytest.fixture(autouse=True)
def _production_configuration() -> None:
    # Fail, never skip: a suite that passes without its real parts proves nothing.
    if not PRODUCTION:
        pytest.fail("the reliability suite runs the production configuration: use `make test-reliability`")
