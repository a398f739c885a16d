"""The Celery workers' probes in deploy/: exec probes that run gatehouse.worker_probe on files
in the pod's own /tmp, with a startup budget that covers a GPU worker's model load."""

from typing import Any

import pytest

from gatehouse.worker_probe import PROBE_DIR_VARIABLE, main
from tests.deploy.test_manifests import _compose, _env, _gpu_workers, _main, _mounts, _only

PROBE = ["python", "-m", "gatehouse.worker_probe"]

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def workers() -> list[Doc]:
    from tests.deploy.test_manifests import K8S, _documents

    manifests = [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]
    default = _only(manifests, "Deployment", **{"app.kubernetes.io/component": "worker"})
    return [default, *_gpu_workers(manifests)]


def _under(path: str, mounts: dict[str, Doc]) -> bool:
    return any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in mounts)


def test_worker_pods_are_probed_live_and_ready_by_the_probe_module(workers: list[Doc]) -> None:
    for worker in workers:
        name = worker["metadata"]["name"]
        container = _main(worker)
        for probe, flag in [
            ("startupProbe", "--live"),
            ("livenessProbe", "--live"),
            ("readinessProbe", "--ready"),
        ]:
            assert container[probe]["exec"]["command"] == [*PROBE, flag], f"{name} {probe}"
        directory = _env(container)[PROBE_DIR_VARIABLE]
        assert _under(directory, _mounts(container)), f"{name}: {directory} is not on a writable mount"


def test_the_probe_accepts_the_arguments_the_manifests_give_it(tmp_path: Any) -> None:
    # 1 (no heartbeat yet), not argparse's 2: the flags exist.
    assert main(["--live", "--dir", str(tmp_path)]) == 1
    assert main(["--ready", "--dir", str(tmp_path)]) == 1


def test_gpu_workers_get_time_to_load_their_models_before_liveness_counts(workers: list[Doc]) -> None:
    for worker in workers[1:]:
        startup = _main(worker)["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= 600, f"{worker['metadata']['name']} is killed after {budget}s of warm-up"


def test_compose_workers_are_healthy_only_when_the_probe_says_ready() -> None:
    services = _compose()["services"]
    for name in ("worker", "inference-worker"):
        service = services[name]
        assert service["healthcheck"]["test"] == ["CMD", *PROBE, "--ready"], name
        directory = service["environment"][PROBE_DIR_VARIABLE]
        assert _under(directory, {path: {} for path in service["tmpfs"]}), (
            f"compose {name}: {directory} not on tmpfs"
        )


def test_no_worker_probe_asks_the_broker(workers: list[Doc]) -> None:
    """`celery inspect ping` costs a broker round trip and a Celery start per probe, and fails
    with the broker: a broker outage would restart every worker."""
    texts = [str(_main(worker)) for worker in workers]
    texts += [str(_compose()["services"][name]["healthcheck"]) for name in ("worker", "inference-worker")]
    assert not [text for text in texts if "inspect ping" in text]
