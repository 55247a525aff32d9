"""The Grafana dashboard shipped for operators only charts metrics the services really export."""

import json
import re
from pathlib import Path

from shared import observability

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "refuge-dashboard.json"


def exported_names() -> set[str]:
    names = set()
    for metric in observability.REGISTRY.collect():
        for sample in metric.samples:
            names.add(sample.name)
        names.add(metric.name)
    # counters and histograms not yet observed still export these suffixes
    for metric in observability.REGISTRY.collect():
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names.update({metric.name + s for s in ("_bucket", "_sum", "_count")})
    return names


def test_every_dashboard_query_uses_an_exported_metric():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(queries) >= 9
    for query in queries:
        used = set(re.findall(r"\brefuge_[a-z_]+", query))
        assert used, query
        assert used <= exported, f"{query} uses {used - exported}"
