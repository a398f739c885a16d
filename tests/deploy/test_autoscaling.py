"""deploy/k8s/autoscaling/: KEDA scales each GPU worker on the length of the queues it serves.

The ScaledObject and TriggerAuthentication are checked against their CRDs' schemas, vendored
in deploy/k8s/schemas/ (`make deploy-check` runs the same check), and against the workers and
the broker they describe.
"""

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from inference.dispatch import inference_queue
from tests.deploy.test_manifests import K8S, _documents, _gpu_workers, _main, _option

AUTOSCALING = K8S / "autoscaling"
SCHEMAS = K8S / "schemas"
# The Redis scaler's parameters (KEDA's redis-lists documentation); trigger metadata is a map of
# strings to the CRD, so a misspelt one would pass its schema and be ignored by KEDA.
REDIS_SCALER_PARAMETERS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "usernameFromEnv",
    "passwordFromEnv", "listName", "listLength", "activationListLength", "enableTLS", "unsafeSsl",
    "databaseIndex",
}  # fmt: skip

Doc = dict[str, Any]


def _all(kind: str) -> list[Doc]:
    return [
        doc for path in sorted(AUTOSCALING.glob("*.yaml")) for doc in _documents(path) if doc["kind"] == kind
    ]


def _schema(name: str) -> Doc:
    return dict(json.loads((SCHEMAS / name).read_text()))


@pytest.fixture(scope="module")
def manifests() -> list[Doc]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


@pytest.mark.parametrize(
    ("kind", "schema"),
    [
        ("ScaledObject", "scaledobject-v1alpha1.json"),
        ("TriggerAuthentication", "triggerauthentication-v1alpha1.json"),
    ],
)
def test_keda_objects_match_their_crds_schema_and_a_typo_is_refused(kind: str, schema: str) -> None:
    documents = _all(kind)
    assert documents, f"no {kind} in {AUTOSCALING.name}/"
    validator = jsonschema.Draft7Validator(_schema(schema))
    for document in documents:
        errors = [error.message for error in validator.iter_errors(document)]
        assert not errors, f"{kind} {document['metadata']['name']}: {errors}"
        broken = copy.deepcopy(document)
        broken["spec"]["pollingIntervall" if kind == "ScaledObject" else "secretTargetReff"] = 1
        assert not validator.is_valid(broken), "the schema lets an unknown field through"


def test_each_gpu_worker_scales_on_exactly_the_queues_it_serves(manifests: list[Doc]) -> None:
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in _all("ScaledObject")}
    for worker in _gpu_workers(manifests):
        name = worker["metadata"]["name"]
        assert name in scaled, f"no ScaledObject scales {name}"
        scaler = scaled[name]
        assert scaler["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        queues = set(_option(_main(worker)["command"], "--queues").split(","))
        assert all(queue.startswith(inference_queue(model_name="")) for queue in queues)
        lists = {trigger["metadata"]["listName"] for trigger in scaler["spec"]["triggers"]}
        assert lists == queues, f"{name} serves {sorted(queues)} but scales on {sorted(lists)}"
        assert "replicas" not in worker["spec"], f"{name} sets replicas, which every apply would reset"


def test_the_scaler_reads_the_brokers_redis_with_its_password(manifests: list[Doc]) -> None:
    secrets = {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == "Secret"}
    broker = urlsplit(secrets["gatehouse-secrets"]["stringData"]["CELERY_BROKER_URL"])
    authentications = {doc["metadata"]["name"]: doc for doc in _all("TriggerAuthentication")}
    keda_secrets = {doc["metadata"]["name"]: doc for doc in _all("Secret")}
    for scaler in _all("ScaledObject"):
        for trigger in scaler["spec"]["triggers"]:
            metadata = trigger["metadata"]
            assert trigger["type"] == "redis"
            assert set(metadata) <= REDIS_SCALER_PARAMETERS, set(metadata) - REDIS_SCALER_PARAMETERS
            assert metadata["address"] == f"{broker.hostname}:{broker.port}"
            assert metadata["databaseIndex"] == broker.path.strip("/"), "not the broker's database"
            assert int(metadata["listLength"]) >= 1
            authentication = authentications[trigger["authenticationRef"]["name"]]
            for ref in authentication["spec"]["secretTargetRef"]:
                assert ref["parameter"] == "password"
                assert ref["key"] in keda_secrets[ref["name"]]["stringData"]
                assert "change-me" in keda_secrets[ref["name"]]["stringData"][ref["key"]]


def test_replica_bounds_hold_and_scaling_down_is_slow() -> None:
    for scaler in _all("ScaledObject"):
        spec = scaler["spec"]
        # The CRD's CEL rule, which JSON schema cannot say.
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["cooldownPeriod"] >= 300, "scaling to zero soon after a burst wastes a model load"
        down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300


def test_deploy_check_validates_every_keda_file() -> None:
    target = (K8S.parents[1] / "Makefile").read_text().split("deploy-check:", 1)[1].split("\n\n", 1)[0]
    for path in AUTOSCALING.glob("*.yaml"):
        kind = _documents(path)[0]["kind"]
        pattern = {
            "Secret": path.name,
            "TriggerAuthentication": path.name,
            "ScaledObject": "inference-*.yaml",
        }[kind]
        assert f"deploy/k8s/autoscaling/{pattern}" in target, f"make deploy-check skips {path.name}"
    assert Path(SCHEMAS / "scaledobject-v1alpha1.json").name in target
