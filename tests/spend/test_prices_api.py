"""A version's prices through the registry API: set, shown, audited; bad ones refused whole."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEvent
from inference.models import ModelVersion
from inference.services import model_register, model_version_register_remote
from tests.accounts.helpers import bearer_client, login

pytestmark = pytest.mark.django_db

URL = "/api/models/priced/versions/r1/prices/"


@pytest.fixture
def version(alice: User) -> ModelVersion:
    model = model_register(name="priced", actor=alice)
    return model_version_register_remote(
        model=model, label="r1", base_url="http://127.0.0.1:9/v1", remote_model="m", actor=alice
    )


@pytest.fixture
def admin(alice: User) -> APIClient:
    return bearer_client(login(alice).access)


def test_prices_are_set_shown_and_audited_with_before_and_after(
    admin: APIClient, version: ModelVersion
) -> None:
    answer = admin.put(URL, {"input_per_million": "2.5", "output_per_million": "10"}, format="json")
    assert answer.status_code == 200
    (shown,) = answer.json()["versions"]
    assert (shown["input_price_per_million"], shown["output_price_per_million"], shown["currency"]) == (
        "2.5000",
        "10.0000",
        "USD",
    )
    admin.put(URL, {"input_per_million": "3", "output_per_million": "10"}, format="json")
    first, second = AuditEvent.objects.filter(action="model.version.prices_changed").order_by("id")
    assert first.metadata["before"] == {"input_per_million": None, "output_per_million": None}
    assert second.metadata["before"] == {"input_per_million": "2.5000", "output_per_million": "10.0000"}
    assert second.metadata["after"] == {"input_per_million": "3.0000", "output_per_million": "10.0000"}
    assert second.actor_display == "alice"


def test_setting_the_same_prices_again_writes_no_second_event(
    admin: APIClient, version: ModelVersion
) -> None:
    for _ in range(2):
        assert (
            admin.put(URL, {"input_per_million": "1", "output_per_million": "1"}, format="json").status_code
            == 200
        )
    assert AuditEvent.objects.filter(action="model.version.prices_changed").count() == 1


def test_null_prices_make_a_version_free_again(admin: APIClient, version: ModelVersion) -> None:
    admin.put(URL, {"input_per_million": "1", "output_per_million": "1"}, format="json")
    assert (
        admin.put(URL, {"input_per_million": None, "output_per_million": None}, format="json").status_code
        == 200
    )
    version.refresh_from_db()
    assert version.prices.free


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input_per_million": "-1", "output_per_million": "1"}, "input_per_million"),
        ({"input_per_million": "0.00001", "output_per_million": "1"}, "input_per_million"),
        ({"input_per_million": "1", "output_per_million": "ten"}, "output_per_million"),
        ({"input_per_million": "1", "output_per_million": "1", "currency": "EUR"}, "currency"),
    ],
)
def test_a_bad_price_is_refused_and_nothing_changes(
    admin: APIClient, version: ModelVersion, body: dict[str, str], field: str
) -> None:
    admin.put(URL, {"input_per_million": "2", "output_per_million": "4"}, format="json")
    answer = admin.put(URL, body, format="json")
    assert answer.status_code == 400
    assert field in answer.json()
    version.refresh_from_db()
    assert (version.input_price_per_million, version.output_price_per_million) == (Decimal(2), Decimal(4))


def test_an_unknown_version_is_404(admin: APIClient, version: ModelVersion) -> None:
    answer = admin.put("/api/models/priced/versions/r9/prices/", {"input_per_million": "1"}, format="json")
    assert answer.status_code == 404
