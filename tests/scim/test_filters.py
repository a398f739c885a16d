"""List filters (RFC 7644 §3.4.2.2) and pagination on /Users and /Groups."""

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.utils import timezone

from accounts.models import User
from scim.filters import filter_parse
from scim.models import ScimUser
from scim.selectors import USER_FILTER_ATTRIBUTES
from tests.scim.helpers import USERS, ScimClient, scim_error, user_body


@pytest.fixture
def people(scim: ScimClient) -> dict[str, str]:
    """Four SCIM users (one deactivated, one without an email or externalId), by userName: id."""
    made = {}
    for user_name, extra in (
        ("ann@corp.example", {"externalId": "ext-1"}),
        ("bea@corp.example", {"externalId": "ext-2", "active": False}),
        ("cat@other.example", {"externalId": "EXT-3"}),
        ("dan", {"emails": []}),
    ):
        response = scim.post(USERS, user_body(user_name, **extra))
        assert response.status_code == 201, response.content
        made[user_name] = response.json()["id"]
    return made


def _names(scim: ScimClient, filter_text: str, **params: Any) -> list[str]:
    query = "&".join([f"filter={quote(filter_text)}", *(f"{key}={value}" for key, value in params.items())])
    response = scim.get(f"{USERS}?{query}")
    assert response.status_code == 200, response.content
    return sorted(entry["userName"] for entry in response.json()["Resources"])


FILTERS = {
    'userName eq "ANN@corp.example"': ["ann@corp.example"],  # userName is not case-exact
    'userName ne "dan"': ["ann@corp.example", "bea@corp.example", "cat@other.example"],
    'userName co "corp"': ["ann@corp.example", "bea@corp.example"],
    'userName sw "b"': ["bea@corp.example"],
    'userName ew ".example"': ["ann@corp.example", "bea@corp.example", "cat@other.example"],
    'externalId eq "ext-3"': [],  # externalId is case-exact
    'externalId eq "EXT-3"': ["cat@other.example"],
    "externalId pr": ["ann@corp.example", "bea@corp.example", "cat@other.example"],
    "emails pr": ["ann@corp.example", "bea@corp.example", "cat@other.example"],
    'emails.value eq "cat@example.com"': ["cat@other.example"],
    'emails[value eq "ann@example.com"]': ["ann@corp.example"],
    "active eq false": ["bea@corp.example"],
    "active ne false": ["ann@corp.example", "cat@other.example", "dan"],
    'userName co "corp" and active eq true': ["ann@corp.example"],
    'userName eq "dan" or externalId eq "ext-2"': ["bea@corp.example", "dan"],
    'not (userName co "corp")': ["cat@other.example", "dan"],
    '(userName sw "a" or userName sw "b") and not (active eq false)': ["ann@corp.example"],
    'userName eq "dan" or userName eq "ann@corp.example" and active eq false': ["dan"],  # and binds first
    'urn:ietf:params:scim:schemas:core:2.0:User:userName EQ "dan"': ["dan"],
    'name.familyName eq "Scully" and name.givenName sw "D"': [
        "ann@corp.example", "bea@corp.example", "cat@other.example", "dan",
    ],
}  # fmt: skip


@pytest.mark.parametrize("filter_text", FILTERS)
def test_each_operator_and_combination(scim: ScimClient, people: dict[str, str], filter_text: str) -> None:
    assert _names(scim, filter_text) == FILTERS[filter_text]


def test_id_and_last_modified_compare(scim: ScimClient, people: dict[str, str]) -> None:
    assert _names(scim, f'id eq "{people["dan"]}"') == ["dan"]
    assert _names(scim, 'id eq "not-a-uuid"') == []
    later = timezone.now() + timedelta(minutes=1)
    ScimUser.objects.filter(pk=people["dan"]).update(updated_at=later)
    stamp = later.isoformat().replace("+00:00", "Z")
    assert _names(scim, f'meta.lastModified ge "{stamp}"') == ["dan"]
    assert _names(scim, f'meta.lastModified lt "{stamp}"') == sorted(set(people) - {"dan"})
    assert _names(scim, f'meta.lastModified gt "{stamp}"') == []
    assert len(_names(scim, f'meta.lastModified le "{stamp}"')) == 4
    assert len(_names(scim, 'meta.created gt "2000-01-01T00:00:00Z"')) == 4


BAD_FILTERS = {
    'userName eq "dan': "Unexpected character",
    'userName eq "dan" and': "ends where",
    'password eq "x"': "cannot be filtered on",
    'userName xx "dan"': "Expected an operator",
    "userName eq dan": "Expected a value",
    'active eq "yes"': "true or false",
    'userName gt "a"': "gt, ge, lt and le are for",
    'meta.lastModified gt "yesterday"': "not a date and time",
    "userName eq null": "null",
    '(userName eq "dan"': "ends where ')' was expected",
    'userName eq "dan")': "Unexpected ')'",
    "": "empty",
    'emails[type eq "work"]': "cannot be filtered on",
    "not userName pr": "'(' after 'not'",
    "userName eq 5": "quoted string",
}


@pytest.mark.parametrize("filter_text", BAD_FILTERS)
def test_a_bad_filter_is_a_400_invalid_filter_that_says_what(scim: ScimClient, filter_text: str) -> None:
    response = scim.get(f"{USERS}?filter={quote(filter_text)}")
    assert BAD_FILTERS[filter_text] in scim_error(response, 400, "invalidFilter")


def test_overlong_and_deeply_nested_filters_are_refused(scim: ScimClient) -> None:
    deep = "(" * 40 + 'userName eq "x"' + ")" * 40
    assert "nested" in scim_error(scim.get(f"{USERS}?filter={quote(deep)}"), 400, "invalidFilter")
    wide = " or ".join(['userName eq "x"'] * 100)
    assert "comparisons" in scim_error(scim.get(f"{USERS}?filter={quote(wide)}"), 400, "invalidFilter")
    long = 'userName eq "' + "x" * 3000 + '"'
    assert "longer" in scim_error(scim.get(f"{USERS}?filter={quote(long)}"), 400, "invalidFilter")


def test_a_filter_value_is_a_parameter_never_sql(people: dict[str, str]) -> None:
    """Quotes and SQL in a value are only characters to compare with."""
    hostile = "\\\" or 1=1 --'; DROP TABLE accounts_user; --"
    query = filter_parse(f'userName eq "{hostile}"', attributes=USER_FILTER_ATTRIBUTES, model=ScimUser)
    assert list(ScimUser.objects.filter(query)) == []
    assert User.objects.filter(username="dan").exists()
    compiled = str(ScimUser.objects.filter(query).query)
    assert "DROP TABLE" in compiled  # shown in the query's text, bound as a parameter when run


def test_pagination_counts_from_one_and_reports_the_total(scim: ScimClient, people: dict[str, str]) -> None:
    first = scim.get(f"{USERS}?startIndex=1&count=2").json()
    second = scim.get(f"{USERS}?startIndex=3&count=2").json()
    assert (first["totalResults"], first["startIndex"], first["itemsPerPage"]) == (4, 1, 2)
    assert (second["totalResults"], second["startIndex"], second["itemsPerPage"]) == (4, 3, 2)
    names = [entry["userName"] for entry in first["Resources"] + second["Resources"]]
    assert names == list(people)  # oldest first, no repeats
    only_total = scim.get(f"{USERS}?count=0").json()
    assert (only_total["totalResults"], only_total["Resources"]) == (4, [])
    past_the_end = scim.get(f"{USERS}?startIndex=10").json()
    assert (past_the_end["totalResults"], past_the_end["Resources"]) == (4, [])
    assert scim.get(f"{USERS}?startIndex=0&count=1").json()["startIndex"] == 1
    corp = quote('userName co "corp"')
    filtered = scim.get(f"{USERS}?filter={corp}&startIndex=2&count=5").json()
    assert filtered["totalResults"] == 2
    assert [entry["userName"] for entry in filtered["Resources"]] == ["bea@corp.example"]
    assert "count" in scim_error(scim.get(f"{USERS}?count=ten"), 400, "invalidValue")


def test_the_page_size_is_capped(scim: ScimClient, people: dict[str, str], settings: Any) -> None:
    settings.GATEHOUSE_SCIM_MAX_PAGE_SIZE = 3
    page = scim.get(f"{USERS}?count=1000").json()
    assert (page["totalResults"], page["itemsPerPage"]) == (4, 3)
    assert scim.get("/scim/v2/ServiceProviderConfig").json()["filter"]["maxResults"] == 3
