"""The series Gatehouse exports, by name, with their label names: what alerts and dashboards may use.

Two sources: the instruments of gatehouse.metrics (imported, as a process registers them), each
under the names Prometheus stores (a counter's `_total`, a histogram's `_bucket`, `_sum` and
`_count`, and `le` on its buckets); and the figures gatehouse.metrics_export reads at scrape
time, whose families are built in its code (read from its source: building them needs a
database, a broker and a GPU). Prometheus adds `up`, and `job` and `instance` on every series.
"""

import ast
import inspect

from prometheus_client.metrics import MetricWrapperBase

from gatehouse import metrics, metrics_export
from tests.deploy.promql import PromQLReads

# Labels the scrape puts on every series.
TARGET_LABELS = frozenset({"job", "instance"})
# Written by Prometheus itself for every target.
SCRAPE_SERIES = {"up": TARGET_LABELS}

_FAMILY_KINDS = {
    "GaugeMetricFamily": "gauge",
    "CounterMetricFamily": "counter",
    "HistogramMetricFamily": "histogram",
    "SummaryMetricFamily": "summary",
}


def _series(name: str, kind: str, labels: frozenset[str]) -> dict[str, frozenset[str]]:
    """The stored series of one family: `name` as the client names it, without suffixes."""
    labels |= TARGET_LABELS
    if kind == "counter":
        return {f"{name}_total": labels}
    if kind == "histogram":
        return {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels}
    if kind == "summary":
        return {name: labels | {"quantile"}, f"{name}_sum": labels, f"{name}_count": labels}
    return {name: labels}


def _instruments() -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for instrument in vars(metrics).values():
        if isinstance(instrument, MetricWrapperBase):
            # The client keeps a counter's name without `_total`, and its label names, here.
            kind, name = instrument._type, instrument._name
            found.update(_series(name, kind, frozenset(instrument._labelnames)))
    return found


def _scrape_time_families() -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(metrics_export))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = _FAMILY_KINDS.get(node.func.id)
        if kind is None:
            continue
        name = node.args[0]
        assert isinstance(name, ast.Constant), f"a {node.func.id} whose name is not written out"
        labels: frozenset[str] = frozenset()
        for keyword in node.keywords:
            if keyword.arg == "labels":
                labels = frozenset(ast.literal_eval(keyword.value))
        found.update(_series(str(name.value), kind, labels))
    return found


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name Prometheus can hold from Gatehouse, with the label names it carries."""
    return {**SCRAPE_SERIES, **_instruments(), **_scrape_time_families()}


def unexported(reads: PromQLReads) -> list[str]:
    """What a PromQL expression reads that Gatehouse does not export: series, labels matched on
    that the series lacks, and labels grouped by that none of its series has."""
    exported = exported_series()
    problems = [f"series {name}" for name in reads.series if name not in exported]
    for name, labels in reads.series.items():
        problems += [f"label {label} on {name}" for label in sorted(labels - exported.get(name, labels))]
    known = TARGET_LABELS.union(*(exported.get(name, frozenset()) for name in reads.series))
    problems += [f"grouping label {label}" for label in sorted(reads.grouping - known)]
    return problems
