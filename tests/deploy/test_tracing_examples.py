"""The manifests' tracing examples: the `OTEL_*` variables gatehouse.tracing reads, commented out
in deploy/env.example, deploy/compose.yaml and the Kubernetes manifests (tracing stays off as
shipped), each named in docs/production.md, and turning tracing on once uncommented."""

import re
from pathlib import Path

import kubernetes_validate
import yaml

from gatehouse.tracing import tracing_wanted

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "env.example"
COMPOSE = DEPLOY / "compose.yaml"
CONFIGMAP = DEPLOY / "k8s" / "configmap.yaml"
DEPLOYMENTS = [DEPLOY / "k8s" / name for name in ("web.yaml", "worker.yaml", "inference-worker.yaml")]
PRODUCTION_GUIDE = ROOT / "docs" / "production.md"
KUBERNETES_VERSION = "1.31.0"

_OTEL_NAME = re.compile(r"\bOTEL_[A-Z_]+\b")
# `# OTEL_X=value   (a note)` in env.example; `# OTEL_X: value` in YAML.
_ENV_EXAMPLE_LINE = re.compile(r"^# (OTEL_[A-Z_]+)=(\S*)")
_YAML_LINE = re.compile(r"^(\s*)# (OTEL_[A-Z_]+: .*)$", re.MULTILINE)


def _env_example_settings() -> dict[str, str]:
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_EXAMPLE_LINE.match(line)
        if match:
            found[match[1]] = match[2]
    return found


def _uncommented(text: str) -> str:
    """The YAML with its commented `OTEL_*: value` lines (and a commented `- name: OTEL_*` entry
    with its value) turned on."""
    text = re.sub(r"(?m)^(\s*)# (- name: OTEL_[A-Z_]+)\n\1#   (value: .*)$", r"\1\2\n\1  \3", text)
    return _YAML_LINE.sub(r"\1\2", text)


def test_env_example_shows_tracing_commented_out() -> None:
    text = ENV_EXAMPLE.read_text()
    assert not [line for line in text.splitlines() if line.startswith("OTEL_")], "tracing is on as shipped"
    examples = _env_example_settings()
    assert {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    } <= set(examples)
    # Uncommented, the collector alone turns tracing on; the kill switch turns it off again.
    assert tracing_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": examples["OTEL_EXPORTER_OTLP_ENDPOINT"]})
    assert not tracing_wanted(examples)  # OTEL_SDK_DISABLED=true is among them


def test_compose_and_the_kubernetes_manifests_show_tracing_commented_out() -> None:
    for path in [COMPOSE, CONFIGMAP, *DEPLOYMENTS]:
        text = path.read_text()
        assert "# OTEL_" in text or "# - name: OTEL_" in text, f"{path.name} has no tracing example"
        assert "OTEL_" not in yaml.safe_dump(list(yaml.safe_load_all(text))), f"tracing is on in {path.name}"


def test_the_kubernetes_examples_uncommented_are_valid_and_turn_tracing_on() -> None:
    configmap = yaml.safe_load(_uncommented(CONFIGMAP.read_text()))
    kubernetes_validate.validate(configmap, KUBERNETES_VERSION, strict=True)
    assert tracing_wanted(configmap["data"])
    for path in DEPLOYMENTS:
        documents = [document for document in yaml.safe_load_all(_uncommented(path.read_text())) if document]
        for document in documents:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        (deployment,) = [document for document in documents if document["kind"] == "Deployment"]
        (container,) = [
            container
            for container in deployment["spec"]["template"]["spec"]["containers"]
            if any(entry["name"] == "OTEL_SERVICE_NAME" for entry in container.get("env", []))
        ]
        names = {entry["name"]: entry.get("value") for entry in container["env"]}
        assert str(names["OTEL_SERVICE_NAME"]).startswith("gatehouse-"), path.name


def test_the_compose_examples_uncommented_turn_tracing_on() -> None:
    compose = yaml.safe_load(_uncommented(COMPOSE.read_text()))
    shared = compose["x-gatehouse"]["environment"]
    assert tracing_wanted({key: str(value) for key, value in shared.items()})
    for service in ("web", "worker", "inference-worker"):
        assert str(compose["services"][service]["environment"]["OTEL_SERVICE_NAME"]).startswith("gatehouse-")


def test_every_example_names_a_variable_the_production_guide_explains() -> None:
    guide = PRODUCTION_GUIDE.read_text()
    tracing = guide[guide.index("### Tracing") : guide.index("## 9.")]
    documented = set(_OTEL_NAME.findall(tracing))
    for path in [ENV_EXAMPLE, COMPOSE, CONFIGMAP, *DEPLOYMENTS]:
        unknown = set(_OTEL_NAME.findall(path.read_text())) - documented
        assert not unknown, f"{path.name} names {sorted(unknown)}, which docs/production.md does not explain"
