"""The REST API fuzzed against its own OpenAPI schema, as one member of one team.

schemathesis generates requests for every operation of `/api/schema/` (valid and invalid
bodies, parameters and ids) and sends them to a served stack as bob (team red). Each
answer must: not be a server error; have a status, content type and body the schema
declares; and reveal nothing of dave (team blue): not his key, conversation, export,
erasure request nor the model only his team may use. A second test takes the ids of dave's
objects, which random generation would rarely hit, and tries each on every operation
that takes an id: any 2xx fails.
"""

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.server import ServedGatehouse, serve
from tests.reliability.artifacts import figures_write

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("GATEHOUSE_FUZZ_EXAMPLES", "40"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Logging out would end the fuzzing user's own session half-way through.
SCHEMA = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True)).exclude(
    path="/api/auth/logout/"
)


# What the fuzzer sent and was answered, by status class: the note quotes it.
SENT: Counter[str] = Counter()


@dataclass
class TwoTeams:
    served: ServedGatehouse
    bob_token: str
    dave: dict[str, Any]

    @property
    def bob_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bob_token}"}

    def reveals_dave(self, text: str, *, asked: str = "") -> list[str]:
        """Which of dave's identifiers an answer to bob carries (other than those bob asked with)."""
        # Small integer ids are in every answer's text by chance: not telling.
        secrets = [str(value) for name, value in self.dave.items() if name not in ("key_id", "budget_id")]
        return [secret for secret in secrets if secret in text and secret not in asked]


@pytest.fixture(scope="module")
def two_teams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoTeams]:
    served, stop = serve(tmp_path_factory.mktemp("fuzz"))
    try:
        seeded = json.loads(
            served.manage(
                "shell",
                "-c",
                "import json; from tests.reliability.two_teams import two_teams_seed; "
                "print(json.dumps(two_teams_seed()))",
            )
            .strip()
            .splitlines()[-1]
        )
        token = httpx.post(f"{served.base_url}/api/auth/token/", json=seeded["bob"], timeout=30).json()[
            "access"
        ]
        yield TwoTeams(served=served, bob_token=token, dave=seeded["dave"])
    finally:
        stop()
        figures_write("api-fuzzing", {"examples_per_operation": EXAMPLES, "answers": dict(SENT)})


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_to_its_schema_and_to_its_owner(
    case: schemathesis.Case, two_teams: TwoTeams
) -> None:
    response = case.call(base_url=two_teams.served.base_url, headers=two_teams.bob_headers, timeout=60)
    SENT["requests"] += 1
    SENT[f"{response.status_code // 100}xx"] += 1
    case.validate_response(response, checks=CHECKS)
    assert two_teams.reveals_dave(response.text) == [], (
        f"{case.method} {case.formatted_path} answered with dave's"
    )


# How each path parameter names one of dave's objects.
DAVES_OBJECT = {
    "key_id": "key_id",
    "budget_id": "budget_id",
    "conversation_id": "conversation_id",
    "export_id": "export_id",
    "erasure_id": "erasure_id",
    "model_name": "model_name",
    "label": "version_label",
}


def _operations_with_ids() -> list[tuple[str, str, list[str]]]:
    found = []
    for path, item in SCHEMA.raw_schema["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            names = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"]
            names += [p["name"] for p in item.get("parameters", []) if p.get("in") == "path"]
            if names:
                found.append((method.upper(), path, names))
    return found


@pytest.mark.parametrize(("method", "path", "names"), _operations_with_ids())
def test_no_operation_reaches_another_teams_objects(
    two_teams: TwoTeams, method: str, path: str, names: list[str]
) -> None:
    unknown = [name for name in names if name not in DAVES_OBJECT]
    assert not unknown, f"{path}: say which of dave's objects {unknown} names (DAVES_OBJECT)"
    url = path
    for name in names:
        url = url.replace("{" + name + "}", str(two_teams.dave[DAVES_OBJECT[name]]))
    body = {"model": two_teams.dave["model_name"], "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.request(
        method,
        f"{two_teams.served.base_url}{url}",
        headers=two_teams.bob_headers,
        json=body if method in ("POST", "PUT", "PATCH") else None,
        timeout=60,
    )
    SENT["cross_team_tries"] += 1
    assert response.status_code in (403, 404), f"{method} {url}: {response.status_code} {response.text[:300]}"
    assert two_teams.reveals_dave(response.text, asked=url + json.dumps(body)) == []
