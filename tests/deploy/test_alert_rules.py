"""deploy/monitoring/alerts.yaml: valid rules (promtool), unit-tested on synthetic series, naming
only series Gatehouse exports, each with its severity, texts and runbook; and the Prometheus
Operator's copy (deploy/k8s/monitoring/prometheusrule.yaml) holding exactly the same groups.

promtool comes from `make promtool` (deploy/install-promtool.sh): without it these tests fail.
"""

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.exported_metrics import unexported
from tests.deploy.promql import promql_reads

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERTS_TEST = MONITORING / "alerts_test.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
# The CRD's openAPIV3Schema (monitoring.coreos.com/v1 PrometheusRule), as a JSON schema that
# refuses unknown fields, as the API server's strict field validation does.
PROMETHEUS_RULE_SCHEMA = MONITORING / "schemas" / "prometheusrule-v1.json"
PRODUCTION_GUIDE = ROOT / "docs" / "production.md"
SEVERITIES = {"critical", "warning"}

Doc = dict[str, Any]


def _promtool(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make promtool` (deploy/install-promtool.sh)")
    return subprocess.run(
        [promtool, *map(str, arguments)], capture_output=True, text=True, check=False, timeout=120
    )


def _alerts() -> list[Doc]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _alert_ids() -> list[str]:
    return [rule["alert"] for rule in _alerts()]


# --- promtool ----------------------------------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    result = _promtool("test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "sum by (route) (rate(gatehouse_http_requests_total[5m])"
    broken = tmp_path / "alerts.yaml"
    broken.write_text(yaml.safe_dump(rules))
    assert _promtool("check", "rules", broken).returncode != 0


@pytest.mark.parametrize("name", _alert_ids())
@pytest.mark.parametrize("expression", ["vector(1) unless vector(1)", "vector(1)"], ids=["never", "always"])
def test_the_unit_tests_catch_an_alert_that_never_or_always_fires(
    name: str, expression: str, tmp_path: Path
) -> None:
    """Each alert's unit tests pin what it does: one that never fires, or fires all the time,
    fails them. Only the tests that evaluate this alert run, against the changed rules."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                rule["expr"] = expression
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    tests["tests"] = [
        test for test in tests["tests"] if any(case["alertname"] == name for case in test["alert_rule_test"])
    ]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", tmp_path / "alerts_test.yaml")
    assert result.returncode != 0, f"{name}'s unit tests pass with `expr: {expression}`"


# --- every alert: complete, tested both ways, documented --------------------------------------------


@pytest.mark.parametrize("alert", _alerts(), ids=_alert_ids())
def test_every_alert_has_a_wait_a_severity_its_texts_and_a_runbook(alert: Doc) -> None:
    name = alert["alert"]
    assert re.fullmatch(r"Gatehouse[A-Z]\w+", name), name
    assert re.fullmatch(r"\d+[smh]", str(alert.get("for", ""))), f"{name} has no `for:`"
    assert alert.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity one of {SEVERITIES}"
    annotations = alert.get("annotations", {})
    for key in ("summary", "description", "runbook"):
        assert str(annotations.get(key, "")).strip(), f"{name} has no {key}"
    assert name in annotations["runbook"], f"{name}'s runbook does not point at its own entry"


def test_alert_names_are_unique() -> None:
    names = _alert_ids()
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)


def _unit_tests() -> list[Doc]:
    return [
        case for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for case in test["alert_rule_test"]
    ]


@pytest.mark.parametrize("name", _alert_ids())
def test_every_alert_is_unit_tested_firing_and_quiet(name: str) -> None:
    cases = [case for case in _unit_tests() if case["alertname"] == name]
    assert any(case.get("exp_alerts") for case in cases), f"no unit test shows {name} firing"
    assert any(not case.get("exp_alerts") for case in cases), f"no unit test shows {name} staying quiet"


def test_the_unit_tests_name_only_alerts_that_exist() -> None:
    unknown = {case["alertname"] for case in _unit_tests()} - set(_alert_ids())
    assert not unknown, f"alerts_test.yaml tests alerts alerts.yaml lacks: {sorted(unknown)}"


def test_the_production_guide_explains_every_alert() -> None:
    guide = PRODUCTION_GUIDE.read_text()
    missing = [name for name in _alert_ids() if f"**{name}**" not in guide]
    assert not missing, f"docs/production.md has no entry for {missing}"


# --- only what Gatehouse exports -------------------------------------------------------------------


@pytest.mark.parametrize("alert", _alerts(), ids=_alert_ids())
def test_every_alert_reads_only_series_gatehouse_exports(alert: Doc) -> None:
    assert promql_reads(alert["expr"]).series, f"{alert['alert']} reads no series"
    assert not unexported(promql_reads(alert["expr"])), alert["alert"]


def test_the_unit_tests_feed_only_series_gatehouse_exports() -> None:
    problems = {
        series["series"]: unexported(promql_reads(series["series"]))
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for series in test["input_series"]
    }
    assert not {series: found for series, found in problems.items() if found}


def test_the_check_catches_a_series_nobody_exports() -> None:
    def check(expression: str) -> list[str]:
        return unexported(promql_reads(expression))

    assert check("rate(gatehouse_http_requests_total[5m])") == []
    assert check("rate(gatehouse_http_request_total[5m])") == ["series gatehouse_http_request_total"]
    assert check('gatehouse_queue_depth{modle="x"}') == ["label modle on gatehouse_queue_depth"]
    assert check("max by (route) (gatehouse_queue_depth)") == ["grouping label route"]
    # A histogram is stored as _bucket, _sum and _count; `le` is only on the buckets.
    assert check("histogram_quantile(0.9, sum by (le) (rate(gatehouse_queue_wait_seconds[5m])))") == [
        "series gatehouse_queue_wait_seconds",
        "grouping label le",
    ]
    assert check("sum by (le) (rate(gatehouse_queue_wait_seconds_count[5m]))") == ["grouping label le"]


# --- the Prometheus Operator's copy -------------------------------------------------------------------


def _prometheus_rule() -> Doc:
    (document,) = [document for document in yaml.safe_load_all(PROMETHEUS_RULE.read_text()) if document]
    return dict(document)


def test_the_prometheus_rule_holds_exactly_the_rules_file() -> None:
    rule = _prometheus_rule()
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == "gatehouse"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text()), (
        "deploy/k8s/monitoring/prometheusrule.yaml differs from deploy/monitoring/alerts.yaml: its "
        "spec is that file's content, indented under `spec:`"
    )


def _schema_errors(document: Doc) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(PROMETHEUS_RULE_SCHEMA.read_text()))
    return [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]


def test_the_prometheus_rule_matches_the_crd_schema() -> None:
    assert _schema_errors(_prometheus_rule()) == []


def test_the_schema_refuses_a_misspelt_field() -> None:
    broken = copy.deepcopy(_prometheus_rule())
    broken["spec"]["groups"][0]["rules"][0]["annotation"] = broken["spec"]["groups"][0]["rules"][0].pop(
        "annotations"
    )
    assert _schema_errors(broken)
    broken = copy.deepcopy(_prometheus_rule())
    broken["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert _schema_errors(broken)
