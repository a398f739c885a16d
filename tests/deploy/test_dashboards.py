"""deploy/monitoring/dashboards/: Grafana dashboards that read only what Gatehouse exports, each
panel titled and on the dashboard's datasource variable."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.exported_metrics import unexported
from tests.deploy.promql import label_values_reads, promql_reads

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
DATASOURCE = "${datasource}"

Doc = dict[str, Any]


def _dashboard(path: Path) -> Doc:
    return dict(json.loads(path.read_text()))


def _panels(dashboard: Doc) -> Iterator[Doc]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _variable_queries(dashboard: Doc) -> Iterator[tuple[str, str]]:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield variable["name"], query["query"] if isinstance(query, dict) else query


def _dashboard_problems(dashboard: Doc) -> list[str]:
    problems = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            reads = promql_reads(target["expr"])
            if not reads.series:
                problems.append(f"{panel['title']}: reads no series")
            problems += [f"{panel['title']}: {problem}" for problem in unexported(reads)]
    for name, query in _variable_queries(dashboard):
        problems += [f"variable {name}: {problem}" for problem in unexported(label_values_reads(query))]
    return problems


def test_there_are_the_three_dashboards() -> None:
    uids = {_dashboard(path)["uid"] for path in DASHBOARDS}
    assert uids == {"gatehouse-overview", "gatehouse-model", "gatehouse-audit"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_query_reads_only_series_gatehouse_exports(path: Path) -> None:
    dashboard = _dashboard(path)
    assert any(panel.get("targets") for panel in _panels(dashboard))
    assert _dashboard_problems(dashboard) == []


def test_the_check_catches_a_misspelt_series_or_label() -> None:
    dashboard = _dashboard(MONITORING / "dashboards" / "gatehouse-overview.json")
    target = dashboard["panels"][0]["targets"][0]
    target["expr"] = target["expr"].replace("gatehouse_http_requests_total", "gatehouse_http_request_total")
    assert any("series gatehouse_http_request_total" in problem for problem in _dashboard_problems(dashboard))
    target["expr"] = "sum by (modle) (rate(gatehouse_tokens_generated_total[$__rate_interval]))"
    assert any("grouping label modle" in problem for problem in _dashboard_problems(dashboard))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_panel_has_a_title_and_the_datasource_variable(path: Path) -> None:
    dashboard = _dashboard(path)
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in _panels(dashboard):
        assert str(panel.get("title", "")).strip(), f"{path.name}: panel {panel.get('id')} has no title"
        assert panel.get("datasource", {}).get("uid") == DATASOURCE, f"{path.name}: {panel['title']}"
        for target in panel.get("targets", []):
            assert target.get("datasource", {}).get("uid") == DATASOURCE, f"{path.name}: {panel['title']}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE, f"{path.name}: variable {variable['name']}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_panel_ids_are_unique_and_panels_do_not_overlap(path: Path) -> None:
    panels = list(_panels(_dashboard(path)))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{path.name}: {panel['title']} overlaps another panel"
        taken |= cells


def test_the_model_dashboard_is_templated_by_model() -> None:
    dashboard = _dashboard(MONITORING / "dashboards" / "gatehouse-model.json")
    assert "model" in dict(_variable_queries(dashboard))
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            reads = promql_reads(target["expr"])
            per_model = [name for name, labels in reads.series.items() if "model" in labels]
            assert per_model or reads.series.keys() == {"gatehouse_queue_limit"}, panel["title"]
            assert "$model" in target["expr"] or not per_model, panel["title"]
