"""deploy/: the images, the compose file and the Kubernetes manifests keep their promises.

Nothing here needs a database, a cluster or a container engine. The manifests are checked
against the Kubernetes API's own schemas (kubernetes-validate) and the compose file against
the Compose specification (check-jsonschema); both packages carry their schemas. The rest
reads the files and checks what docs/production.md says they do.
"""

import ast
import copy
import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.conf import settings

from inference.protocol import SERVER_MAX_FRAME_BYTES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERFILE_CUDA = DEPLOY / "docker" / "Dockerfile.cuda"
AUDIT_GRANTS = "deploy/postgres/audit-grants.sql"

# The oldest Kubernetes the manifests are written for.
KUBERNETES_VERSION = "1.31.0"
NAMESPACE = "gatehouse"
TORCH_PIN = "torch==2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl/"

# Environment variables that Gatehouse reads outside platform/settings.py, and where: each
# place must still read the name, or the exception goes.
READ_ELSEWHERE = {
    # prometheus_client's multiprocess mode reads it itself.
    "PROMETHEUS_MULTIPROC_DIR": "module:prometheus_client.values",
    # The worker's own /metrics endpoint.
    "GATEHOUSE_WORKER_METRICS_PORT": "platform/celery.py",
    # The worker probes' directory, read without Django (a probe must start fast).
    "GATEHOUSE_WORKER_PROBE_DIR": "platform/worker_probe.py",
    # The platform admin's first password, read by the bootstrap command.
    "GATEHOUSE_ADMIN_PASSWORD": "platform/management/commands/bootstrap.py",
}

Doc = dict[str, Any]


# --- reading the files ----------------------------------------------------------------------------


def _manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def _documents(path: Path) -> list[Doc]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _describe(path: Path, document: Doc) -> str:
    name = document.get("metadata", {}).get("name", "?")
    return f"{path.relative_to(ROOT)}: {document.get('kind', '?')} {name}"


@pytest.fixture(scope="module")
def manifests() -> list[Doc]:
    return [document for path in _manifest_files() for document in _documents(path)]


def _find(manifests: list[Doc], kind: str, **labels: str) -> list[Doc]:
    return [
        document
        for document in manifests
        if document["kind"] == kind and labels.items() <= document["metadata"].get("labels", {}).items()
    ]


def _only(manifests: list[Doc], kind: str, **labels: str) -> Doc:
    found = _find(manifests, kind, **labels)
    assert len(found) == 1, f"expected one {kind} labelled {labels}, found {len(found)}"
    return found[0]


def _web(manifests: list[Doc]) -> Doc:
    return _only(manifests, "Deployment", **{"app.kubernetes.io/component": "web"})


def _gpu_workers(manifests: list[Doc]) -> list[Doc]:
    found = _find(manifests, "Deployment", **{"app.kubernetes.io/component": "inference"})
    assert found, "no GPU inference worker Deployment (component: inference)"
    return found


def _pod_labels(workload: Doc) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def _pod_spec(workload: Doc) -> Doc:
    return dict(workload["spec"]["template"]["spec"])


def _containers(workload: Doc, *, init: bool = True) -> list[Doc]:
    spec = _pod_spec(workload)
    return list(spec["containers"]) + (list(spec.get("initContainers", [])) if init else [])


def _main(workload: Doc) -> Doc:
    return dict(_pod_spec(workload)["containers"][0])


def _env(container: Doc) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def _config(manifests: list[Doc]) -> dict[str, str]:
    return dict(_only(manifests, "ConfigMap")["data"])


def _option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def _mounts(container: Doc) -> dict[str, Doc]:
    return {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}


def _claim_at(workload: Doc, container: Doc, mount_path: str) -> tuple[str, bool]:
    """The PersistentVolumeClaim mounted at a path, and whether the mount is read-only."""
    mount = _mounts(container).get(mount_path)
    assert mount is not None, f"{workload['metadata']['name']} mounts nothing at {mount_path}"
    volumes = {volume["name"]: volume for volume in _pod_spec(workload)["volumes"]}
    claim = volumes[mount["name"]].get("persistentVolumeClaim")
    assert claim, f"{workload['metadata']['name']}: {mount_path} is not a PersistentVolumeClaim"
    return claim["claimName"], bool(mount.get("readOnly", False))


def _compose() -> Doc:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _gatehouse_services(compose: Doc) -> dict[str, Doc]:
    """The compose services that run Gatehouse's own images (not PostgreSQL or Redis)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("gatehouse")
    }


# --- Dockerfiles -----------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = []
    for text in logical:
        instruction, _, arguments = text.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _stages(path: Path) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction, arguments in _instructions(path):
        if instruction == "FROM":
            words = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda match: global_args.get(match[1], match[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
        elif not stages and instruction == "ARG":
            key, _, value = arguments.partition("=")
            global_args[key] = value
        elif stages:
            stages[-1].instructions.append((instruction, arguments))
    assert stages, f"{path.name} has no FROM"
    return stages


def _lineage(stages: list[Stage], stage: Stage) -> list[Stage]:
    """The stage and the stages it is built FROM, the root first."""
    by_name = {candidate.name: candidate for candidate in stages}
    chain = [stage]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return chain


def _runtime(path: Path) -> tuple[list[Stage], Stage]:
    stages = _stages(path)
    return stages, stages[-1]


def _last(chain: list[Stage], instruction: str) -> str:
    values = [arguments for stage in chain for op, arguments in stage.instructions if op == instruction]
    assert values, f"no {instruction} in {[stage.name for stage in chain]}"
    return values[-1]


def _cmd(path: Path) -> list[str]:
    stages, runtime = _runtime(path)
    command = json.loads(_last(_lineage(stages, runtime), "CMD"))
    assert isinstance(command, list), "CMD must be the exec form, so the server gets SIGTERM itself"
    return [str(word) for word in command]


def _image_uid(path: Path) -> int:
    stages, runtime = _runtime(path)
    user = _last(_lineage(stages, runtime), "USER").split(":")[0]
    assert user.isdigit(), f"{path.name}: USER {user} should be numeric, for runAsNonRoot to check it"
    return int(user)


# --- Kubernetes: valid objects, all of them listed ---------------------------------------------------


def test_the_manifests_describe_the_whole_deployment(manifests: list[Doc]) -> None:
    kinds = {(document["kind"], document["metadata"]["name"]) for document in manifests}
    for expected in [
        ("Namespace", NAMESPACE),
        ("ConfigMap", "gatehouse-config"),
        ("Secret", "gatehouse-secrets"),
        ("Secret", "gatehouse-migrate"),
        ("Deployment", "gatehouse-web"),
        ("Service", "gatehouse-web"),
        ("Ingress", "gatehouse"),
        ("HorizontalPodAutoscaler", "gatehouse-web"),
        ("PodDisruptionBudget", "gatehouse-web"),
        ("Deployment", "gatehouse-worker"),
        ("Deployment", "gatehouse-beat"),
        ("Job", "gatehouse-migrate"),
    ]:
        assert expected in kinds, f"deploy/k8s has no {expected[0]} {expected[1]}"
    assert _gpu_workers(manifests)


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda path: path.name)
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    documents = _documents(path)
    assert documents, f"{path.relative_to(ROOT)} holds no document"
    for document in documents:
        where = _describe(path, document)
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = ".".join(str(part) for part in error.path) or "(top)"
            pytest.fail(f"{where} is not valid Kubernetes {KUBERNETES_VERSION}: {location}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{where}: {error.message}")
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") == NAMESPACE, f"{where} is not in {NAMESPACE}"


def test_the_validation_is_strict(manifests: list[Doc]) -> None:
    """A misspelt field (here `livenessprobe`) is an error, not silently ignored."""
    broken = copy.deepcopy(_web(manifests))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {"httpGet": {"path": "/healthz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), (
        f"listed twice: {sorted(r for r in listed if listed.count(r) > 1)}"
    )
    on_disk = {path.name for path in _manifest_files()}
    assert not on_disk - set(listed), f"not in kustomization.yaml: {sorted(on_disk - set(listed))}"
    assert not set(listed) - on_disk, f"listed but missing: {sorted(set(listed) - on_disk)}"
    assert kustomization["namespace"] == NAMESPACE


# --- the web tier ----------------------------------------------------------------------------------


def test_web_probes_hit_healthz_and_readyz_on_port_8000(manifests: list[Doc]) -> None:
    web = _main(_web(manifests))
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    for probe, path in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ]:
        check = web[probe]["httpGet"]
        assert check["path"] == path, f"{probe} asks {check['path']}, not {path}"
        assert ports.get(check["port"], check["port"]) == 8000, f"{probe} does not probe port 8000"


def test_web_probes_need_no_host_header(manifests: list[Doc]) -> None:
    """The kubelet sends the pod's IP as Host, which ALLOWED_HOSTS never holds; the probes and
    /metrics are answered before the host check (gatehouse.middleware.ProbeMiddleware, tested
    in tests/test_health.py), so an overlay changing the host name need not touch them."""
    web = _main(_web(manifests))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert "httpHeaders" not in web[probe]["httpGet"], f"{probe} sets headers it does not need"
    middleware = (ROOT / "platform" / "settings.py").read_text()
    assert '"gatehouse.middleware.ProbeMiddleware"' in middleware


def _make_run_uvicorn() -> list[str]:
    """The uvicorn command line of `make run`."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        words = line.split()
        if "gatehouse.asgi:application" in words:
            return words
    raise AssertionError("the Makefile starts no uvicorn")


def test_the_image_serves_the_asgi_application_as_make_run_does() -> None:
    command = _cmd(DOCKERFILE)
    assert command[:2] == ["uvicorn", "gatehouse.asgi:application"]
    assert _option(command, "--host") == "0.0.0.0"  # noqa: S104 - inside the container, for the pod network
    assert _option(command, "--port") == "8000"
    # The lifespan drains the process's generations on shutdown; the image must run it as make does.
    assert _option(command, "--lifespan") == _option(_make_run_uvicorn(), "--lifespan")
    assert int(_option(command, "--timeout-graceful-shutdown")) > 0


def _e2e_server_uvicorn() -> list[str]:
    """The uvicorn command line tests/e2e/server.py starts (the e2e, reliability and bench stacks)."""
    tree = ast.parse((ROOT / "tests" / "e2e" / "server.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and any(
            isinstance(item, ast.Constant) and item.value == "gatehouse.asgi:application"
            for item in node.elts
        ):
            words = []
            for item in node.elts:
                if isinstance(item, ast.Constant):
                    words.append(str(item.value))
                elif (
                    isinstance(item, ast.Call)
                    and isinstance(item.args[0], ast.Name)
                    and item.args[0].id == "SERVER_MAX_FRAME_BYTES"
                ):
                    words.append(str(SERVER_MAX_FRAME_BYTES))
                else:
                    words.append(ast.unparse(item))
            return words[words.index("uvicorn") :]
    raise AssertionError("tests/e2e/server.py starts no uvicorn")


def _serving_commands(manifests: list[Doc]) -> dict[str, list[str]]:
    """Every command line in the repository that serves the ASGI application, by where it is."""
    commands = {"Makefile (make run)": _make_run_uvicorn(), "tests/e2e/server.py": _e2e_server_uvicorn()}
    for dockerfile in (DOCKERFILE, DOCKERFILE_CUDA):
        if "gatehouse.asgi:application" in _cmd(dockerfile):
            commands[str(dockerfile.relative_to(ROOT))] = _cmd(dockerfile)
    for name, service in _compose()["services"].items():
        command = service.get("command")
        words = command.split() if isinstance(command, str) else [str(word) for word in command or []]
        if any("gatehouse.asgi" in word for word in words):
            commands[f"compose service {name}"] = words
    for workload in manifests:
        if "template" not in workload.get("spec", {}):
            continue
        for container in _containers(workload):
            words = [str(word) for word in container.get("command", []) + container.get("args", [])]
            if any("gatehouse.asgi" in word for word in words):
                commands[f"{workload['kind']} {workload['metadata']['name']}/{container['name']}"] = words
    return commands


def test_every_server_command_refuses_websocket_frames_past_the_protocols_limit(
    manifests: list[Doc],
) -> None:
    """uvicorn reads a frame whole (16 MiB by default) before the consumer can refuse it;
    --ws-max-size makes the server itself refuse what the protocol would."""
    assert (
        settings.GATEHOUSE_WS_MAX_FRAME_BYTES
        < SERVER_MAX_FRAME_BYTES
        <= 2 * settings.GATEHOUSE_WS_MAX_FRAME_BYTES
    )
    commands = _serving_commands(manifests)
    assert {"Makefile (make run)", "tests/e2e/server.py", "deploy/docker/Dockerfile"} <= commands.keys()
    for where, command in commands.items():
        assert "--ws-max-size" in command, f"{where} serves without --ws-max-size: {command}"
        assert _option(command, "--ws-max-size") == str(SERVER_MAX_FRAME_BYTES), where
        # Token frames are tiny: compressing each costs CPU on both ends and saves nothing.
        assert _option(command, "--ws-per-message-deflate") == "false", f"{where} compresses frames"
    # The web tier runs the image's command, which carries it (no override that could drop it).
    assert "command" not in _compose()["services"]["web"], "compose web overrides the image's command"
    web = _main(_web(manifests))
    assert "command" not in web
    assert "args" not in web


def _shutdown_seconds(manifests: list[Doc]) -> int:
    """What the web server may take after SIGTERM: uvicorn's graceful timeout, then the drain."""
    graceful = int(_option(_cmd(DOCKERFILE), "--timeout-graceful-shutdown"))
    drain = float(
        _config(manifests).get("GATEHOUSE_SHUTDOWN_DRAIN_SECONDS", settings.GATEHOUSE_SHUTDOWN_DRAIN_SECONDS)
    )
    return graceful + int(drain + 0.999)


def test_web_pods_get_time_to_finish_their_streams(manifests: list[Doc]) -> None:
    """The kubelet's SIGKILL must come after the preStop pause, uvicorn's graceful shutdown and
    the lifespan's drain."""
    shutdown = _shutdown_seconds(manifests)
    web = _web(manifests)
    container = _main(web)
    assert "command" not in container, "web should run the image's command, whose shutdown timeout is checked"
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    budget = _pod_spec(web)["terminationGracePeriodSeconds"]
    assert budget > int(pause[1]) + shutdown, f"grace {budget}s <= preStop {pause[1]}s + shutdown {shutdown}s"
    stop = _compose()["services"]["web"]["stop_grace_period"]
    assert int(stop.rstrip("s")) > shutdown, f"compose web stop_grace_period {stop} <= {shutdown}s"


def test_the_hpa_scales_the_web_deployment(manifests: list[Doc]) -> None:
    hpa = _only(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    web = _web(manifests)
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        web["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] >= 2, "one web pod is a single point of failure"


def test_the_pdb_selects_the_web_pods_and_no_others(manifests: list[Doc]) -> None:
    selector = _only(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    web = _web(manifests)
    assert selector.items() <= _pod_labels(web).items(), (
        "the PodDisruptionBudget does not select the web pods"
    )
    for other in _find(manifests, "Deployment"):
        if other is not web:
            assert not selector.items() <= _pod_labels(other).items(), (
                f"it also selects {other['metadata']['name']}"
            )


def test_every_service_selects_a_deployments_pods(manifests: list[Doc]) -> None:
    deployments = _find(manifests, "Deployment")
    for service in _find(manifests, "Service"):
        selector = service["spec"]["selector"]
        assert selector, f"Service {service['metadata']['name']} selects nothing"
        targets = [d for d in deployments if selector.items() <= _pod_labels(d).items()]
        assert targets, f"Service {service['metadata']['name']} selects no Deployment's pods: {selector}"
        port_names = {port["name"] for d in targets for c in _containers(d) for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"no container port named {port['targetPort']}"


def test_the_ingress_keeps_websockets_open_longer_than_their_idle_timeout(manifests: list[Doc]) -> None:
    ingress = _only(manifests, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"])
        assert seconds > settings.GATEHOUSE_WS_IDLE_TIMEOUT, f"{timeout} {seconds}s cuts idle chats early"
    web_service = _only(manifests, "Service", **{"app.kubernetes.io/component": "web"})
    allowed = _config(manifests)["ALLOWED_HOSTS"].split(",")
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in allowed, f"the Ingress serves {rule['host']}, which ALLOWED_HOSTS refuses"
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["name"] == web_service["metadata"]["name"]


# --- workers and beat ------------------------------------------------------------------------------


def test_gpu_workers_get_a_gpu_on_a_gpu_node(manifests: list[Doc]) -> None:
    for worker in _gpu_workers(manifests):
        name = worker["metadata"]["name"]
        spec = _pod_spec(worker)
        container = _main(worker)
        assert str(container["resources"]["limits"].get("nvidia.com/gpu")) == "1", f"{name} asks for no GPU"
        assert spec["nodeSelector"].get("nvidia.com/gpu.present") == "true", f"{name} may land on a CPU node"
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"]), (
            f"{name} tolerates no GPU taint"
        )
        assert "gatehouse-cuda" in container["image"], f"{name} runs {container['image']}, not the CUDA image"
        assert spec["terminationGracePeriodSeconds"] >= 300, f"{name} kills running generations too soon"


def test_each_gpu_worker_serves_the_queue_of_the_model_it_warms(manifests: list[Doc]) -> None:
    from inference.dispatch import inference_queue

    workers = [(w["metadata"]["name"], _main(w)["command"], _env(_main(w))) for w in _gpu_workers(manifests)]
    for name, service in _compose()["services"].items():
        if "--pool" in service.get("command", []) and "threads" in service["command"]:
            workers.append((f"compose {name}", service["command"], service["environment"]))
    for name, command, env in workers:
        models = [model for model in env["GATEHOUSE_WARM_MODELS"].split(",") if model]
        assert models, f"{name} warms no model"
        queues = set(_option(command, "--queues").split(","))
        assert queues == {inference_queue(model_name=model) for model in models}, (
            f"{name}: {queues} vs {models}"
        )
        assert _option(command, "--pool") == "threads", f"{name}: threads share one model's weights and batch"


def test_the_default_worker_consumes_the_default_and_compliance_queues(manifests: list[Doc]) -> None:
    from gatehouse.celery import app

    wanted = {app.conf.task_default_queue, settings.GATEHOUSE_COMPLIANCE_QUEUE}
    command = _main(_only(manifests, "Deployment", **{"app.kubernetes.io/component": "worker"}))["command"]
    assert wanted <= set(_option(command, "--queues").split(",")), f"Kubernetes worker misses {wanted}"
    compose_command = _compose()["services"]["worker"]["command"]
    assert wanted <= set(_option(compose_command, "--queues").split(",")), f"compose worker misses {wanted}"


def test_beat_is_one_scheduler_on_the_database(manifests: list[Doc]) -> None:
    beat = _only(manifests, "Deployment", **{"app.kubernetes.io/component": "beat"})
    assert beat["spec"]["replicas"] == 1, "two beats send every periodic task twice"
    assert beat["spec"]["strategy"]["type"] == "Recreate", "a rolling update runs two beats for a while"
    hpa_targets = {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in _find(manifests, "HorizontalPodAutoscaler")
    }
    assert beat["metadata"]["name"] not in hpa_targets
    scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
    assert scheduler == settings.CELERY_BEAT_SCHEDULER
    assert _option(_main(beat)["command"], "--scheduler") == scheduler
    compose_beat = _compose()["services"]["beat"]
    assert _option(compose_beat["command"], "--scheduler") == scheduler
    assert compose_beat.get("deploy", {}).get("replicas", 1) == 1


# --- pods: non-root, read-only, volumes where the settings point ------------------------------------


def test_pods_run_as_the_images_non_root_user_on_a_read_only_root(manifests: list[Doc]) -> None:
    uid = _image_uid(DOCKERFILE)
    assert uid != 0
    assert _image_uid(DOCKERFILE_CUDA) == uid, "both images must run as the user that owns the volumes"
    for workload in _find(manifests, "Deployment") + _find(manifests, "Job"):
        name = workload["metadata"]["name"]
        pod = _pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == uid, f"{name} runs as {pod['runAsUser']}, the images as {uid}"
        for container in _containers(workload):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "/tmp" in _mounts(container), f"{where} has no writable /tmp"  # noqa: S108 - a mount path
            assert container["resources"]["requests"], f"{where} requests nothing"
            assert container["resources"]["limits"].get("memory"), f"{where} has no memory limit"
            multiproc = _env(container).get("PROMETHEUS_MULTIPROC_DIR")
            if multiproc:
                assert multiproc in _mounts(container), f"{where}: nothing mounted at {multiproc}"


def test_the_audit_sink_exports_and_models_are_on_shared_volumes(manifests: list[Doc]) -> None:
    config = _config(manifests)
    web = _web(manifests)
    worker = _only(manifests, "Deployment", **{"app.kubernetes.io/component": "worker"})
    migrate = _only(manifests, "Job")
    checkpoints = config["GATEHOUSE_AUDIT_CHECKPOINT_DIR"]
    # The default worker runs beat's checkpoint task and writes; web reads for verification.
    writer_claim, writer_read_only = _claim_at(worker, _main(worker), checkpoints)
    reader_claim, reader_read_only = _claim_at(web, _main(web), checkpoints)
    assert writer_claim == reader_claim, "web and the workers see different checkpoint sinks"
    assert not writer_read_only, "the worker that writes checkpoints mounts the sink read-only"
    assert reader_read_only, "web only reads checkpoints: mount the sink read-only there"
    exports = config["GATEHOUSE_COMPLIANCE_EXPORT_DIR"]
    assert _claim_at(worker, _main(worker), exports)[0] == _claim_at(web, _main(web), exports)[0]
    models = config["GATEHOUSE_MODEL_ROOT"]
    claim, read_only = _claim_at(migrate, _main(migrate), models)  # bootstrap writes the demo model
    assert not read_only
    for gpu in _gpu_workers(manifests):
        assert _claim_at(gpu, _main(gpu), models)[0] == claim


def test_app_pods_wait_for_the_migrate_job(manifests: list[Doc]) -> None:
    for workload in _find(manifests, "Deployment"):
        init = " ".join(
            " ".join(container["command"]) for container in _pod_spec(workload).get("initContainers", [])
        )
        assert "migrate --check" in init, f"{workload['metadata']['name']} may start before its migrations"


def _grants_step(script: str) -> str:
    """The Python the migrate script feeds itself (`python - <<'PY' ... PY`)."""
    match = re.search(r"<<'PY'\n(.*?)\nPY\b", script, re.DOTALL)
    assert match, "the migrate script has no Python grant step"
    return match[1]


def _executes_audit_grants(script: str) -> bool:
    """Whether the grant step reads deploy/postgres/audit-grants.sql and executes what it read."""
    tree = ast.parse(_grants_step(script))
    read_into = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and AUDIT_GRANTS in ast.unparse(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "execute"
        and any(isinstance(arg, ast.Name) and arg.id in read_into for arg in node.args)
        for node in ast.walk(tree)
    )


def test_migrate_refuses_unsafe_settings_then_migrates_bootstraps_and_grants(manifests: list[Doc]) -> None:
    job = _only(manifests, "Job")
    container = _main(job)
    compose_migrate = _compose()["services"]["migrate"]["command"]
    for where, script in [("Job", container["command"][-1]), ("compose", compose_migrate[-1])]:
        steps = [
            "manage.py check --deploy --fail-level WARNING",
            "manage.py migrate --noinput",
            "manage.py bootstrap",
            AUDIT_GRANTS,
        ]
        positions = [script.find(step) for step in steps]
        assert -1 not in positions, f"{where} migrate misses {steps[positions.index(-1)]}"
        assert positions == sorted(positions), f"{where} migrate runs its steps out of order"
        assert _executes_audit_grants(script), f"{where} migrate reads {AUDIT_GRANTS} but never runs it"
    assert (ROOT / AUDIT_GRANTS).is_file()
    assert _grants_step(container["command"][-1]) == _grants_step(compose_migrate[-1]), (
        "the two grant steps differ"
    )
    # The owner's credentials come last, so they win over the app's DATABASE_URL.
    assert container["envFrom"][-1]["secretRef"]["name"] == "gatehouse-migrate"
    for name, service in _gatehouse_services(_compose()).items():
        if name != "migrate":
            condition = service["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully", f"compose {name} does not wait for migrate"


# --- configuration: real variables, placeholder secrets ------------------------------------------------


def _known_names() -> set[str]:
    text = (ROOT / "platform" / "settings.py").read_text() + (DEPLOY / "env.example").read_text()
    return set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", text))


def _read_elsewhere(name: str) -> bool:
    place = READ_ELSEWHERE[name]
    if place.startswith("module:"):
        spec = importlib.util.find_spec(place.split(":", 1)[1])
        assert spec is not None
        assert spec.origin is not None
        return name in Path(spec.origin).read_text()
    return name in (ROOT / place).read_text()


def test_every_variable_set_is_one_gatehouse_reads(manifests: list[Doc]) -> None:
    set_where: dict[str, str] = {}
    for document in manifests:
        if document["kind"] in ("ConfigMap", "Secret"):
            for key in {**document.get("data", {}), **document.get("stringData", {})}:
                set_where[key] = f"{document['kind']} {document['metadata']['name']}"
    for workload in _find(manifests, "Deployment") + _find(manifests, "Job"):
        for container in _containers(workload):
            for key in _env(container):
                set_where[key] = f"{workload['metadata']['name']}/{container['name']}"
    for name, service in _gatehouse_services(_compose()).items():
        for key in service.get("environment", {}):
            set_where[key] = f"compose {name}"
    known = _known_names()
    unknown = {
        key: where
        for key, where in set_where.items()
        if key not in known and not (key in READ_ELSEWHERE and _read_elsewhere(key))
    }
    assert not unknown, f"set, but neither platform/settings.py nor deploy/env.example reads them: {unknown}"


def test_secrets_are_placeholders(manifests: list[Doc]) -> None:
    secrets = _find(manifests, "Secret")
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "templates use stringData, where a placeholder stays readable"
        for key, value in secret["stringData"].items():
            assert "change-me" in value, (
                f"Secret {secret['metadata']['name']} {key} holds a real-looking value"
            )


def test_compose_takes_secrets_from_the_operator_not_the_file() -> None:
    """Secrets in compose.yaml are `${NAME:?...}`: compose refuses to start without them."""
    required = re.compile(r"\$\{[A-Z_]+:\?[^}]*\}")
    for name, service in _gatehouse_services(_compose()).items():
        env = service["environment"]
        for key in (
            "SECRET_KEY",
            "JWT_SIGNING_KEY",
            "API_KEY_PEPPER",
            "GATEHOUSE_AUDIT_SIGNING_KEY",
            "DATABASE_URL",
        ):
            assert required.search(str(env[key])), f"compose {name} {key} is not taken from the environment"


# --- compose -------------------------------------------------------------------------------------------


def _compose_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_compose_file_passes_the_compose_specification() -> None:
    result = _compose_check(COMPOSE)
    assert result.returncode == 0, f"{COMPOSE.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"


def test_the_compose_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["web"]["heathcheck"] = broken["services"]["web"].pop("healthcheck")  # a typo
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert _compose_check(path).returncode != 0


def test_compose_runs_the_whole_stack_with_health_checks() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"db", "redis", "migrate", "web", "worker", "inference-worker", "beat"} <= set(services)
    for name in ("db", "redis", "web", "worker", "inference-worker"):
        assert services[name].get("healthcheck", {}).get("test"), f"compose {name} has no healthcheck"
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    devices = services["inference-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "gatehouse-cuda" in services["inference-worker"]["image"]
    redis = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis, "an evicting Redis drops queued tasks and quota counters"
    version = int(re.match(r"postgres:(\d+)", services["db"]["image"])[1])  # type: ignore[index]
    assert version >= 15


# --- images ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "index"),
    [(DOCKERFILE, PYTORCH_INDEX + "cpu"), (DOCKERFILE_CUDA, PYTORCH_INDEX + "cu")],
    ids=["cpu", "cuda"],
)
def test_images_pin_torch_from_the_right_pytorch_index(path: Path, index: str) -> None:
    stages = _stages(path)
    installs = [
        arguments
        for stage in stages
        for op, arguments in stage.instructions
        if op == "RUN" and re.search(r"\btorch==", arguments)
    ]
    assert installs, f"{path.name} installs no pinned torch"
    for command in installs:
        assert re.search(rf"\b{re.escape(TORCH_PIN)}(\s|$)", command), f"{path.name}: {command}"
        assert f"--index-url {index}" in command, f"{path.name} takes torch from elsewhere: {command}"


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_CUDA], ids=["cpu", "cuda"])
def test_the_runtime_stage_is_slim_and_runs_as_a_non_root_user(path: Path) -> None:
    stages, runtime = _runtime(path)
    assert len(stages) >= 2, f"{path.name} is not multi-stage"
    chain = _lineage(stages, runtime)
    builders = {stage.name for stage in stages if "build-essential" in str(stage.instructions)}
    assert not builders & {stage.name for stage in chain}, f"{path.name}'s runtime is built on a builder"
    assert _image_uid(path) != 0, f"{path.name} runs as root"


def test_the_cpu_image_collects_static_files_with_throwaway_keys() -> None:
    runs = [arguments for stage in _stages(DOCKERFILE) for op, arguments in stage.instructions if op == "RUN"]
    collect = next((run for run in runs if "collectstatic" in run), None)
    assert collect is not None, "DEBUG=false serves the manifest storage, which collectstatic builds"
    assert "DEBUG=false" in collect
    keys = dict(re.findall(r"\b(SECRET_KEY|JWT_SIGNING_KEY)=(\S+)", collect))
    assert set(keys) == {"SECRET_KEY", "JWT_SIGNING_KEY"}, "DEBUG=false refuses to load without both"
    assert len(set(keys.values())) == 2, "settings refuse one key for both"
    from gatehouse.checks import secret_refusals

    assert not secret_refusals({**keys, "API_KEY_PEPPER": keys["SECRET_KEY"]}), "settings refuse these keys"


def test_the_cuda_image_is_an_nvidia_runtime_image_with_python_311_and_a_celery_worker() -> None:
    stages, runtime = _runtime(DOCKERFILE_CUDA)
    chain = _lineage(stages, runtime)
    assert re.match(r"nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu", chain[0].base), chain[0].base
    assert "python3.11" in str([stage.instructions for stage in chain])
    command = _cmd(DOCKERFILE_CUDA)
    assert command[:4] == ["celery", "-A", "gatehouse", "worker"]
    assert all(queue.startswith("inference.") for queue in _option(command, "--queues").split(","))


# --- /metrics: scraped with the token, never open ----------------------------------------------------

PODMONITOR = K8S / "monitoring" / "podmonitor.yaml"


def test_prometheus_scrapes_the_web_pods_with_the_metrics_token(manifests: list[Doc]) -> None:
    """With DEBUG off /metrics answers only the bearer token (or an allowed network): the
    PodMonitor sends the token from the Secret, and no annotation invites a token-less scrape."""
    web = _web(manifests)
    annotations = web["spec"]["template"]["metadata"].get("annotations", {})
    assert "prometheus.io/scrape" not in annotations, "annotation scrapes send no token: they get 401"
    (monitor,) = _documents(PODMONITOR)
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["spec"]["selector"]["matchLabels"].items() <= _pod_labels(web).items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    port_names = {port["name"] for port in _main(web)["ports"]}
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"].get("type", "Bearer") == "Bearer"
    secrets = {secret["metadata"]["name"]: secret for secret in _find(manifests, "Secret")}
    secret = secrets[credentials["name"]]
    assert credentials["key"] == "GATEHOUSE_METRICS_TOKEN"
    assert credentials["key"] in secret["stringData"]
    env_from = {source.get("secretRef", {}).get("name") for source in _main(web)["envFrom"]}
    assert credentials["name"] in env_from, "the web pods do not read the token the scraper sends"


WORKERS_PODMONITOR = K8S / "monitoring" / "workers-podmonitor.yaml"


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, and matchExpressions with In) picks these labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_prometheus_scrapes_every_worker_on_its_metrics_port(manifests: list[Doc]) -> None:
    """The alerting rules find the workers by the job this PodMonitor gives them."""
    (monitor,) = _documents(WORKERS_PODMONITOR)
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert (monitor["metadata"]["namespace"], monitor["metadata"]["name"]) == (NAMESPACE, "gatehouse-workers")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    deployments = _find(manifests, "Deployment")
    picked = [
        workload for workload in deployments if _selects(monitor["spec"]["selector"], _pod_labels(workload))
    ]
    components = {_pod_labels(workload)["app.kubernetes.io/component"] for workload in picked}
    assert components == {"worker", "inference"}, components
    assert all(workload in picked for workload in _gpu_workers(manifests))
    for workload in picked:
        ports = {port["name"]: port["containerPort"] for port in _main(workload).get("ports", [])}
        assert endpoint["port"] in ports, f"{workload['metadata']['name']} has no {endpoint['port']} port"
        served = _env(_main(workload)).get("GATEHOUSE_WORKER_METRICS_PORT")
        assert served == str(ports[endpoint["port"]]), (
            f"{workload['metadata']['name']} serves metrics on {served}"
        )


def test_no_deployment_opens_metrics_to_every_address(manifests: list[Doc]) -> None:
    settings_sets = [_config(manifests)] + [
        _env(container) for workload in _find(manifests, "Deployment") for container in _containers(workload)
    ]
    settings_sets += [
        dict(service.get("environment", {})) for service in _gatehouse_services(_compose()).values()
    ]
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert example.get("DEBUG") == "false"
    for values in [*settings_sets, example]:
        networks = str(values.get("GATEHOUSE_METRICS_ALLOWED_NETWORKS", ""))
        assert "0.0.0.0/0" not in networks, networks
        assert "::/0" not in networks, networks
