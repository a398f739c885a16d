"""What a PromQL expression reads: the series it selects (with the labels it matches on) and the
labels it groups or joins by. Enough of the language for alerting rules and dashboards; Grafana's
variables (`$model`, `$__rate_interval`) are understood.
"""

import re
from dataclasses import dataclass, field

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[\w$]+|@\s*[\w.()$]+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
# A name not preceded by a word character or a dot (`1e9`, `0.5`), with its matchers if any.
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "inf", "nan", "atan2"}
)


@dataclass
class PromQLReads:
    # Each series selected, with the label names its matchers use.
    series: dict[str, set[str]] = field(default_factory=dict)
    # Labels named in by/without/on/ignoring/group_left/group_right.
    grouping: set[str] = field(default_factory=set)


def promql_reads(expression: str) -> PromQLReads:
    reads = PromQLReads()
    text = _STRING.sub('""', expression)
    text = _RANGE.sub("", text)
    text = _OFFSET.sub("", text)
    text = _VARIABLE.sub("", text)
    for labels in _GROUPING.findall(text):
        reads.grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    for name, matchers, call in _IDENTIFIER.findall(text):
        if call or name.lower() in _KEYWORDS:
            continue  # a function or an aggregation, or a keyword
        reads.series.setdefault(name, set()).update(_MATCHER_LABEL.findall(matchers))
    return reads


def label_values_reads(query: str) -> PromQLReads:
    """A Grafana variable's query: `label_values(series, label)` or a PromQL expression."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", query)
    if match is None:
        return promql_reads(query)
    reads = promql_reads(match[1])
    reads.grouping.add(match[2])
    return reads
