"""Every API endpoint under the permission matrix (see tests/permission_matrix.py)."""

from typing import Any, ClassVar

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.permission_matrix import COVERED_ROUTES, PermissionMatrix, World, world_fixture  # noqa: F401

ALL_OK = {"alice": 200, "bob": 200, "dave": 200, "carol": 200}


class TestModelList(PermissionMatrix):
    route = "/v1/models"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}
    visible: ClassVar[dict[str, set[str]]] = {
        "alice": {"granted-model", "open-model", "hidden-model"},
        "bob": {"granted-model", "open-model"},
        "dave": {"open-model"},
        "carol": {"open-model"},
    }

    def listed(self, response: Any) -> set[str]:
        return {entry["id"] for entry in response.json()["data"]}


class TestModelDetailGranted(PermissionMatrix):
    route = "/v1/models/<str:model_name>"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "bob": 200,
        "dave": 404,
        "carol": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return "/v1/models/granted-model"


class TestModelDetailHidden(TestModelDetailGranted):
    """A model nobody was granted is indistinguishable from one that does not exist."""

    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "bob": 404,
        "dave": 404,
        "carol": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return "/v1/models/hidden-model"


class TestChatCompletionGranted(PermissionMatrix):
    """Object-level access before anything runs: the matrix models have no production version,
    so whoever may use the model hears 503, and whoever may not hears 404, like a missing one."""

    route = "/v1/chat/completions"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 503,
        "bob": 503,
        "dave": 404,
        "carol": 404,
    }
    model = "granted-model"

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"model": self.model, "messages": [{"role": "user", "content": "hi"}]}


class TestChatCompletionHidden(TestChatCompletionGranted):
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 503,
        "bob": 404,
        "dave": 404,
        "carol": 404,
    }
    model = "hidden-model"


class TestTextCompletionGranted(TestChatCompletionGranted):
    """The same object-level access before anything runs as chat completions."""

    route = "/v1/completions"

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"model": self.model, "prompt": "hi"}


class TestTextCompletionHidden(TestTextCompletionGranted):
    expected: ClassVar[dict[str, int]] = TestChatCompletionHidden.expected
    model = "hidden-model"


class TestResponseGranted(TestChatCompletionGranted):
    """The same object-level access before anything runs as chat completions."""

    route = "/v1/responses"

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"model": self.model, "input": "hi"}


class TestResponseHidden(TestResponseGranted):
    expected: ClassVar[dict[str, int]] = TestChatCompletionHidden.expected
    model = "hidden-model"


class TestEmbeddingGranted(TestChatCompletionGranted):
    """The same object-level access first; who may use the (chat) model then hears that it
    makes no embeddings (400), and who may not hears 404."""

    route = "/v1/embeddings"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 400,
        "bob": 400,
        "dave": 404,
        "carol": 404,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"model": self.model, "input": "hi"}


class TestEmbeddingHidden(TestEmbeddingGranted):
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 400,
        "bob": 404,
        "dave": 404,
        "carol": 404,
    }
    model = "hidden-model"


class TestConversationList(PermissionMatrix):
    route = "/api/conversations/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}
    # Own conversations only, admins included.
    visible: ClassVar[dict[str, set[str]]] = {"alice": set(), "bob": {"bob's"}, "dave": set(), "carol": set()}

    def listed(self, response: Any) -> set[str]:
        return {entry["title"] for entry in response.json()["results"]}


class TestConversationDetail(PermissionMatrix):
    route = "/api/conversations/<str:conversation_id>/"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 404,
        "bob": 200,
        "dave": 404,
        "carol": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return f"/api/conversations/{world.bobs_conversation.pk}/"


class TestConversationDelete(TestConversationDetail):
    method = "delete"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 404,
        "bob": 204,
        "dave": 404,
        "carol": 404,
    }


class TestUsage(PermissionMatrix):
    """Everyone reads their own standing only: the response names no one else's counters."""

    route = "/api/usage/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}


class TestApiKeyList(PermissionMatrix):
    route = "/api/keys/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}
    # Everyone sees their own key only, admins included (they manage others' in the console).
    visible: ClassVar[dict[str, set[str]]] = {
        persona: {f"{persona}-key"} for persona in ("alice", "bob", "dave", "carol")
    }

    def listed(self, response: Any) -> set[str]:
        return {key["name"] for key in response.json()}


class TestApiKeyCreate(PermissionMatrix):
    route = "/api/keys/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 201,
        "bob": 201,
        "dave": 201,
        "carol": 201,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        return {"name": "matrix", "scopes": ["chat"]}


class TestApiKeyRevokeBobsKey(PermissionMatrix):
    """Only the owner revokes through the API; anyone else gets 404, not 403."""

    route = "/api/keys/<int:key_id>/"
    method = "delete"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 404,
        "bob": 204,
        "dave": 404,
        "carol": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return f"/api/keys/{world.keys['bob'].pk}/"


class TestWsTicket(PermissionMatrix):
    route = "/api/ws-ticket/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 201,
        "bob": 201,
        "dave": 201,
        "carol": 201,
    }


class TestLogout(PermissionMatrix):
    route = "/api/auth/logout/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        return {"all": False, "refresh": ""} if persona == "anonymous" else {"all": True}


class TestTokenObtain(PermissionMatrix):
    """Public: the answer depends on the credentials, not on who asks."""

    route = "/api/auth/token/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 401,
        "bob": 401,
        "dave": 401,
        "carol": 401,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        return {"username": "nobody", "password": "wrong"}


class TestTokenRefresh(PermissionMatrix):
    route = "/api/auth/token/refresh/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 401,
        "bob": 401,
        "dave": 401,
        "carol": 401,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        return {"refresh": "not-a-token"}


# Second factors (/api/auth/2fa/): everyone manages their own, and only their own.
SIGNED_IN_400 = {"anonymous": 401, "alice": 400, "bob": 400, "dave": 400, "carol": 400}


class TestTwoFactorStatus(PermissionMatrix):
    route = "/api/auth/2fa/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}


class TestTotpEnrolmentStart(PermissionMatrix):
    route = "/api/auth/2fa/totp/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 201,
        "bob": 201,
        "dave": 201,
        "carol": 201,
    }


class TestTotpRemoveWithAlicesCode(PermissionMatrix):
    """Alice's code removes alice's authenticator; to anyone else it proves nothing (they have
    none of their own to remove), and hers stays."""

    route = "/api/auth/2fa/totp/"
    method = "delete"
    expected: ClassVar[dict[str, int]] = {**SIGNED_IN_400, "alice": 204}

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        from django_otp.oath import totp

        from accounts.services import two_factor_enroll

        two_factor_enroll(user=world.users["alice"], actor=None)
        device = world.users["alice"].totpdevice_set.get()
        return {"otp": f"{totp(device.bin_key, step=device.step, t0=device.t0, drift=device.drift):06d}"}


class TestTotpConfirm(PermissionMatrix):
    """Nothing is pending for anyone here: 400 once past the permission checks."""

    route = "/api/auth/2fa/totp/confirm/"
    method = "post"
    expected: ClassVar[dict[str, int]] = SIGNED_IN_400

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        return {"code": "123456"}


class TestRecoveryCodesRegenerate(PermissionMatrix):
    route = "/api/auth/2fa/recovery-codes/"
    method = "post"
    expected: ClassVar[dict[str, int]] = SIGNED_IN_400

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        return {"otp": "123456"}


class TestSchema(PermissionMatrix):
    route = "/api/schema/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 200, **ALL_OK}


class TestDocs(PermissionMatrix):
    route = "/api/docs/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 200, **ALL_OK}


# SPEC §4: auditors read, export and verify the trail; admins may too; nobody else.
AUDIT_READERS = {"anonymous": 401, "alice": 200, "bob": 403, "dave": 403, "carol": 200}


class TestAuditEvents(PermissionMatrix):
    route = "/api/audit/events/"
    expected: ClassVar[dict[str, int]] = AUDIT_READERS


class TestAuditVerify(PermissionMatrix):
    route = "/api/audit/verify/"
    expected: ClassVar[dict[str, int]] = AUDIT_READERS


class TestAuditExport(PermissionMatrix):
    route = "/api/audit/export/"
    expected: ClassVar[dict[str, int]] = AUDIT_READERS


# SPEC §5: the subject, or a compliance officer (admins are officers too); others' requests are 404.
def _bobs_export(world: World) -> str:
    from audit.compliance import compliance_export_request, compliance_export_run

    export = compliance_export_request(subject=world.users["bob"], requested_by=world.users["bob"])
    compliance_export_run(export_id=str(export.pk))
    return str(export.pk)


class TestExportRequestList(PermissionMatrix):
    route = "/api/compliance/exports/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}


class TestExportRequestCreateForSelf(PermissionMatrix):
    route = "/api/compliance/exports/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 202,
        "bob": 202,
        "dave": 202,
        "carol": 202,
    }


class TestExportRequestCreateForBob(TestExportRequestCreateForSelf):
    """Only officers may ask for someone else's data; to others the name is not theirs to test."""

    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 202,
        "bob": 202,
        "dave": 400,
        "carol": 400,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"subject": "bob"}


class TestExportRequestDetail(PermissionMatrix):
    route = "/api/compliance/exports/<uuid:export_id>/"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "bob": 200,
        "dave": 404,
        "carol": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return f"/api/compliance/exports/{_bobs_export(world)}/"


class TestExportDownload(PermissionMatrix):
    route = "/api/compliance/exports/<uuid:export_id>/download/"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "bob": 200,
        "dave": 404,
        "carol": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return f"/api/compliance/exports/{_bobs_export(world)}/download/"


class TestErasureRequestList(PermissionMatrix):
    route = "/api/compliance/erasures/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}


class TestErasureRequestCreateForBob(PermissionMatrix):
    route = "/api/compliance/erasures/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 202,
        "bob": 202,
        "dave": 400,
        "carol": 400,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"subject": "bob"}


class TestErasureRequestDetail(PermissionMatrix):
    route = "/api/compliance/erasures/<uuid:erasure_id>/"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "bob": 200,
        "dave": 404,
        "carol": 404,
    }

    def path(self, world: World, persona: str) -> str:
        from audit.compliance import compliance_erasure_request

        erasure = compliance_erasure_request(subject=world.users["bob"], requested_by=world.users["alice"])
        return f"/api/compliance/erasures/{erasure.pk}/"


def _api_routes() -> set[str]:
    """'METHOD /path' for every view method under /api/ and /v1/."""
    routes: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                path = "/" + prefix + str(entry.pattern)
                if not path.startswith(("/api/", "/v1/")):
                    continue
                view_class = getattr(entry.callback, "cls", None)
                methods = [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)]
                routes.update(f"{method.upper()} {path}" for method in methods)

    walk(get_resolver().url_patterns, "")
    return routes


@pytest.mark.django_db
def test_every_api_route_has_a_permission_matrix() -> None:
    uncovered = _api_routes() - COVERED_ROUTES
    assert not uncovered, f"routes without a permission matrix: {sorted(uncovered)}"


# The registry (/api/models/): model managers and admins only; alice (an admin) gets through,
# every member and the auditor are refused before anything is read or changed.
REGISTRY_ALICE_ONLY = {"anonymous": 401, "bob": 403, "dave": 403, "carol": 403}
_UPSTREAM = "http://127.0.0.1:9/v1"


def _registry_versions(world: World, *statuses: str) -> None:
    """Remote versions of `granted-model` labelled r1, r2, ... moved to `statuses` in turn."""
    from inference.services import (
        model_version_promote,
        model_version_register_remote,
        model_version_stage,
    )

    for number, wanted in enumerate(statuses, start=1):
        version = model_version_register_remote(
            model=world.granted_model, label=f"r{number}", base_url=_UPSTREAM, remote_model="m", actor=None
        )
        if wanted in ("staging", "production"):
            model_version_stage(version=version, actor=None)
        if wanted == "production":
            model_version_promote(version=version, actor=None)


class TestRegistryModelList(PermissionMatrix):
    route = "/api/models/"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 200}


class TestRegistryModelCreate(PermissionMatrix):
    route = "/api/models/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 201}

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"name": "new-model"}


class TestRegistryModelDetail(PermissionMatrix):
    route = "/api/models/<slug:model_name>/"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 200}

    def path(self, world: World, persona: str) -> str:
        return "/api/models/hidden-model/"


class TestRegistryModelServing(PermissionMatrix):
    route = "/api/models/<slug:model_name>/"
    method = "patch"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 200}

    def path(self, world: World, persona: str) -> str:
        return "/api/models/hidden-model/"

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"routing": "least_busy", "response_cache": True}


class TestRegistryVersionRegister(PermissionMatrix):
    route = "/api/models/<slug:model_name>/versions/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 201}

    def path(self, world: World, persona: str) -> str:
        return "/api/models/granted-model/versions/"

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"label": "r1", "backend": "openai_compatible", "base_url": _UPSTREAM, "remote_model": "m"}


class _RegistryVersionStep:
    """A lifecycle step's matrix (mixed in before PermissionMatrix)."""

    method = "post"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 200}
    step: ClassVar[str]
    # What the versions are before the step; the step acts on the last.
    before: ClassVar[tuple[str, ...]]

    def path(self, world: World, persona: str) -> str:
        _registry_versions(world, *self.before)
        return f"/api/models/granted-model/versions/r{len(self.before)}/{self.step}/"


class TestRegistryVersionStage(_RegistryVersionStep, PermissionMatrix):
    route = "/api/models/<slug:model_name>/versions/<str:label>/stage/"
    step, before = "stage", ("draft",)


class TestRegistryVersionPromote(_RegistryVersionStep, PermissionMatrix):
    route = "/api/models/<slug:model_name>/versions/<str:label>/promote/"
    step, before = "promote", ("staging",)


class TestRegistryVersionRetire(_RegistryVersionStep, PermissionMatrix):
    route = "/api/models/<slug:model_name>/versions/<str:label>/retire/"
    step, before = "retire", ("staging",)


class TestRegistryVersionCanary(_RegistryVersionStep, PermissionMatrix):
    route = "/api/models/<slug:model_name>/versions/<str:label>/canary/"
    step, before = "canary", ("production", "staging")

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"weight": 10}


class TestRegistryRollback(PermissionMatrix):
    route = "/api/models/<slug:model_name>/rollback/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 200}

    def path(self, world: World, persona: str) -> str:
        _registry_versions(world, "production", "production")  # r2 replaced r1
        return "/api/models/granted-model/rollback/"


class TestRegistryCanaryStop(PermissionMatrix):
    route = "/api/models/<slug:model_name>/canary-stop/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 200}

    def path(self, world: World, persona: str) -> str:
        return "/api/models/granted-model/canary-stop/"


class TestRegistryDeploymentAdd(_RegistryVersionStep, PermissionMatrix):
    route = "/api/models/<slug:model_name>/versions/<str:label>/deployments/"
    step, before = "deployments", ("staging",)
    expected: ClassVar[dict[str, int]] = {**REGISTRY_ALICE_ONLY, "alice": 201}

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"base_url": "http://127.0.0.1:10/v1", "remote_model": "m", "weight": 2}


class TestRegistryVersionPrices(_RegistryVersionStep, PermissionMatrix):
    route = "/api/models/<slug:model_name>/versions/<str:label>/prices/"
    method = "put"
    step, before = "prices", ("production",)

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"input_per_million": "2.5", "output_per_million": "10"}


class TestSpendOwn(PermissionMatrix):
    """Everyone reads their own spend."""

    route = "/api/spend/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}


class TestSpendEveryone(PermissionMatrix):
    route = "/api/spend/"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "carol": 200,
        "bob": 403,
        "dave": 403,
    }

    def path(self, world: World, persona: str) -> str:
        return "/api/spend/?scope=all&group_by=user"


def _budgets(world: World) -> dict[str, int]:
    """bob's own budget, one on dave's key, one on a model alone: their ids by name."""
    from spend.models import Budget

    alice, bob = world.users["alice"], world.users["bob"]
    made = [
        Budget(name="bob-user", user=bob, period="day", amount=5),
        Budget(name="bob-key", api_key=world.keys["bob"], period="month", amount=5),
        Budget(name="dave-key", api_key=world.keys["dave"], period="month", amount=5),
        Budget(name="model-wide", model=world.granted_model, period="total", amount=50),
    ]
    from spend.services import budget_save

    return {budget.name: budget_save(budget=budget, actor=alice).pk for budget in made}


class TestBudgetList(PermissionMatrix):
    route = "/api/budgets/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 401, **ALL_OK}
    everything: ClassVar[set[str]] = {"bob-user", "bob-key", "dave-key", "model-wide"}
    visible: ClassVar[dict[str, set[str]]] = {
        "alice": everything,
        "carol": everything,
        "bob": {"bob-user", "bob-key", "model-wide"},
        "dave": {"dave-key", "model-wide"},
    }

    def path(self, world: World, persona: str) -> str:
        _budgets(world)
        return self.route

    def listed(self, response: Any) -> set[str]:
        return {budget["name"] for budget in response.json()}


class TestBudgetCreateOnOwnKey(PermissionMatrix):
    """Anyone may cap their own key's spend: it only narrows what the key may do."""

    route = "/api/budgets/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 201,
        "bob": 201,
        "dave": 201,
        "carol": 201,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        key = world.keys.get(persona, world.keys["bob"])
        return {"name": "mine", "api_key": key.pk, "period": "day", "amount": "1.50"}


class TestBudgetCreateForSomeoneElse(PermissionMatrix):
    route = "/api/budgets/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 201,
        "bob": 403,
        "dave": 403,
        "carol": 403,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"name": "bob's", "user": "bob", "period": "month", "amount": "100"}


class TestBudgetDetail(PermissionMatrix):
    route = "/api/budgets/<int:budget_id>/"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "bob": 200,
        "carol": 200,
        "dave": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return f"/api/budgets/{_budgets(world)['bob-user']}/"


class TestBudgetChangeBobsOwn(PermissionMatrix):
    """bob sees the budget an admin set on him, but may not raise it."""

    route = "/api/budgets/<int:budget_id>/"
    method = "patch"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 200,
        "bob": 403,
        "carol": 403,
        "dave": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return f"/api/budgets/{_budgets(world)['bob-user']}/"

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return {"amount": "500"}


class TestBudgetDeleteBobsKey(PermissionMatrix):
    route = "/api/budgets/<int:budget_id>/"
    method = "delete"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 401,
        "alice": 204,
        "bob": 204,
        "carol": 403,
        "dave": 404,
    }

    def path(self, world: World, persona: str) -> str:
        return f"/api/budgets/{_budgets(world)['bob-key']}/"


class TestSsoProviders(PermissionMatrix):
    """Public: clients find the identity providers before anyone has signed in."""

    route = "/api/auth/oidc/providers/"
    expected: ClassVar[dict[str, int]] = {"anonymous": 200, **ALL_OK}


class TestSsoTokenExchange(PermissionMatrix):
    """Public: the answer depends on the ID token, not on who asks (none is configured here)."""

    route = "/api/auth/oidc/token/"
    method = "post"
    expected: ClassVar[dict[str, int]] = {
        "anonymous": 400,
        "alice": 400,
        "bob": 400,
        "dave": 400,
        "carol": 400,
    }

    def payload(self, world: World, persona: str) -> dict[str, Any]:
        return {"provider": "corp", "id_token": "not-a-token"}
