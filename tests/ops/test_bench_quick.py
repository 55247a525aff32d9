"""`python -m bench --quick` runs every scenario of the benchmark against the real stack and writes
its figures. Timings are never asserted: only that each scenario produced its numbers, that the
table was printed, and that the JSON and the plot exist."""

import json
import subprocess
import sys
from numbers import Number
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("baseline", "handler_throughput", "end_to_end", "intake_api", "footprint", "backlog_drain")
SERVICES = ("intake", "housing", "referrals", "notify")


def is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def run_quick_bench(out: Path, *options: str) -> dict:
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), *options],
                         cwd=ROOT, capture_output=True, text=True, timeout=880)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "refuge benchmark" in run.stdout and "targets of issue 9" in run.stdout

    [figures_file] = out.glob("bench-*.json")
    [plot] = out.glob("bench-*.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == sorted([figures_file.name, plot.name])  # work files removed
    data = json.loads(figures_file.read_text())
    assert data["meta"]["quick"] is True
    for name, figures in data["scenarios"].items():
        assert "error" not in figures, (name, figures)
    return data


def check_baseline_and_handlers(scenarios: dict) -> None:
    baseline = scenarios["baseline"]
    assert all(is_number(baseline[k]) for k in ("consume_per_s", "produce_per_s"))
    assert is_number(baseline["hop_latency"]["p99_ms"])
    for service in SERVICES:
        drained = scenarios["handler_throughput"][service]
        assert drained["completed"] is True and drained["acknowledged"] == drained["events"], (service, drained)
        assert drained["dead_lettered"] == 0, (service, drained)
        assert is_number(drained["per_s"]) and is_number(drained["ratio_to_baseline"]), (service, drained)


@pytest.mark.timeout(900)
def test_the_quick_benchmark_measures_every_scenario_and_writes_json_and_plot(tmp_path):
    data = run_quick_bench(tmp_path)
    assert data["meta"]["store"] == "sqlite"
    scenarios = data["scenarios"]
    assert set(scenarios) == set(SCENARIOS)
    check_baseline_and_handlers(scenarios)

    rates = scenarios["end_to_end"]["rates"]
    assert sorted(rates, key=int) == ["20", "100", "300"]
    for rate, measured in rates.items():
        # Failed requests (e.g. 500s of an overloaded store) are figures too: only some must get through.
        assert measured["failures"] < measured["requests"] and measured["mails"] > 0, (rate, measured)
        latency = measured["latency"]
        assert all(is_number(latency[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "p99_ms_ratio_to_hop"))
        assert is_number(measured["backlog_growth_per_s"])
        # Every service did work for the requests (intake records them, each other service reacts).
        assert all(measured["cpu_ms_per_request"][service] > 0 for service in SERVICES), (rate, measured)

    api = scenarios["intake_api"]
    assert api["bare"]["requests_per_s"] > 0 and api["intake"]["requests_per_s"] > 0
    assert is_number(api["ratio_requests_per_s"])

    footprint = scenarios["footprint"]
    assert is_number(footprint["startup_s"]) and is_number(footprint["startup_ratio_to_bare"])
    for service in SERVICES:
        assert all(is_number(footprint["rss_mb"][service][k]) for k in ("idle", "after_load", "after_load_ratio_to_bare"))
        assert is_number(footprint["idle_cpu_ms_per_s"][service])

    drain = scenarios["backlog_drain"]
    assert drain["completed"] is True and drain["acknowledged"] == drain["events"]
    assert is_number(drain["drain_s"]) and is_number(drain["per_s"]) and is_number(drain["ratio_to_baseline"])

    assert {t["figure"] for t in data["targets"]} >= {"end-to-end p99 at 100 requests/s", "all services healthy after start"}
