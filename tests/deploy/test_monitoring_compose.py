"""compose's `monitoring` profile: Prometheus scraping the stack with the alerting rules loaded,
and Grafana provisioned with the datasource and the dashboards."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MONITORING = DEPLOY / "monitoring"
PROVISIONING = MONITORING / "grafana" / "provisioning"

Doc = dict[str, Any]


def _compose() -> Doc:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def _mounts(service: Doc) -> dict[str, str]:
    """Where each bind mount lands in the container, and what it mounts (relative to deploy/)."""
    return {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    }


def test_both_run_only_with_the_monitoring_profile() -> None:
    services = _compose()["services"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"compose {name} publishes {port} beyond loopback"


def test_prometheus_loads_the_rules_and_a_valid_configuration(tmp_path: Path) -> None:
    prometheus = _compose()["services"]["prometheus"]
    mounts = _mounts(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == "./monitoring/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yaml"] == "./monitoring/alerts.yaml"
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yaml"]  # beside prometheus.yml, as mounted
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web = jobs["gatehouse-web"]
    secret = web["authorization"]["credentials_file"]
    assert secret == f"/run/secrets/{prometheus['secrets'][0]}"
    assert _compose()["secrets"][prometheus["secrets"][0]]["environment"] == "GATEHOUSE_METRICS_TOKEN"
    # promtool reads the token file and the rules: give it both where it runs.
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make promtool` (deploy/install-promtool.sh)")
    (tmp_path / "token").write_text("a-token\n")
    web["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(MONITORING / "alerts.yaml", tmp_path / "alerts.yaml")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_web_tier_and_every_worker() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: {target for static in job["static_configs"] for target in static["targets"]}
        for job in config["scrape_configs"]
    }
    assert targets["gatehouse-web"] == {"web:8000"}
    workers = {
        f"{name}:{service['environment']['GATEHOUSE_WORKER_METRICS_PORT']}"
        for name, service in services.items()
        if "GATEHOUSE_WORKER_METRICS_PORT" in service.get("environment", {})
    }
    assert workers
    assert targets["gatehouse-workers"] == workers


def test_grafana_provisions_the_datasource_and_the_dashboards() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "gatehouse.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    assert mounts[provider["options"]["path"]] == "./monitoring/dashboards"
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in grafana["depends_on"]
