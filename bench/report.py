"""The figures as a table (rich), a JSON file and a PNG plot; and the issue's targets beside them."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

HANDLER_SERVICES = ("housing", "referrals", "notify", "intake")


def _get(data: dict, *path, default=None):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def targets(scenarios: dict) -> list[dict]:
    """The issue's targets, for the lead's report: the benchmark itself passes or fails nothing."""
    rows = []

    def add(figure: str, target: str, value, met: bool | None) -> None:
        rows.append({"figure": figure, "target": target, "value": value, "met": met})

    handlers = scenarios.get("handler_throughput", {})
    for service in HANDLER_SERVICES:
        per_s, rel = _get(handlers, service, "per_s"), _get(handlers, service, "ratio_to_baseline")
        met = None if per_s is None or rel is None else per_s >= 5000 and rel >= 0.3
        add(f"handler throughput, {service}", ">= 5,000 events/s and >= 0.3 x baseline", per_s, met)
    p99 = _get(scenarios, "end_to_end", "rates", "100", "latency", "p99_ms")
    add("end-to-end p99 at 100 requests/s", "<= 25 ms", p99, None if p99 is None else p99 <= 25)
    at300 = _get(scenarios, "end_to_end", "rates", "300", default={})
    growth = at300.get("backlog_growth_per_s")
    steady = None if growth is None else (growth <= 0.05 * 300 and at300.get("missing_mails") == 0
                                          and at300.get("failures") == 0 and not at300.get("stopped_early_overloaded"))
    add("backlog growth at 300 requests/s",
        "none (<= 5 % of the rate per s, rate held throughout, no request failed, no mail missing)", growth, steady)
    api = _get(scenarios, "intake_api", "ratio_requests_per_s")
    add("intake API requests/s vs bare validating endpoint", ">= 0.4", api, None if api is None else api >= 0.4)
    for service, rss in (_get(scenarios, "footprint", "rss_mb", default={}) or {}).items():
        add(f"resident memory after load, {service}", "<= 120 MB", rss["after_load"], rss["after_load"] <= 120)
    startup = _get(scenarios, "footprint", "startup_s")
    add("all services healthy after start", "<= 5 s", startup, None if startup is None else startup <= 5)
    drain_s = _get(scenarios, "backlog_drain", "drain_s")
    events = _get(scenarios, "backlog_drain", "events")
    add(f"backlog of {events} events drained", "< 60 s (for 100,000)", drain_s,
        None if drain_s is None or events != 100_000 else drain_s < 60)
    return rows


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"
    return str(value)


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_rows(scenarios: dict) -> list[tuple[str, str, str, str]]:
    """(scenario, figure, value, ratio to the baseline of the same run)."""
    rows = []
    b = scenarios.get("baseline", {})
    if "error" not in b:
        rows += [
            ("baseline", "redis-py consume into the store, events/s", _fmt(b.get("consume_per_s"), 0), "1.00x (baseline)"),
            ("baseline", "redis-py produce, events/s", _fmt(b.get("produce_per_s"), 0), ""),
            ("baseline", "one hop p50 / p99, ms",
             f"{_fmt(_get(b, 'hop_latency', 'p50_ms'), 2)} / {_fmt(_get(b, 'hop_latency', 'p99_ms'), 2)}",
             "1.00x (hop)"),
        ]
    handlers = scenarios.get("handler_throughput", {})
    for service in HANDLER_SERVICES:
        if service in handlers:
            h = handlers[service]
            rows.append(("handler throughput", f"{service}, events/s ({h['events']:,} queued)",
                         _fmt(h.get("per_s"), 0), _x(h.get("ratio_to_baseline"))))
    for rate, r in (_get(scenarios, "end_to_end", "rates", default={}) or {}).items():
        lat = r["latency"]
        rows.append(("end-to-end", f"{rate}/s p50 / p95 / p99 / max, ms",
                     " / ".join(_fmt(lat.get(p), 1) for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
                     f"p99 {_x(lat.get('p99_ms_ratio_to_hop'))} hop"))
        rows.append(("end-to-end", f"{rate}/s backlog growth/s, missing mails, failures",
                     f"{_fmt(r.get('backlog_growth_per_s'), 1)}, {r.get('missing_mails')}, {r.get('failures')}",
                     f"{r.get('backlog_before')} earlier in flight"))
        if cpu := r.get("cpu_ms_per_request"):
            rows.append(("end-to-end", f"{rate}/s CPU per request, ms: " + " / ".join(name[0] for name in cpu),
                         " / ".join(_fmt(v, 1) for v in cpu.values()), f"total {_fmt(sum(cpu.values()), 1)}"))
        if r.get("stopped_early_overloaded"):
            rows.append(("end-to-end", f"{rate}/s OVERLOADED: sending stopped",
                         f"after {r['requests']:,} requests, {r['sending_s']:.1f} s", ""))
    api = scenarios.get("intake_api", {})
    if "error" not in api and api:
        rows += [
            ("intake API", f"bare validating endpoint, req/s (c={api['concurrency']})",
             _fmt(_get(api, "bare", "requests_per_s"), 0), "1.00x (bare)"),
            ("intake API", "POST /api/requests, req/s", _fmt(_get(api, "intake", "requests_per_s"), 0),
             _x(api.get("ratio_requests_per_s"))),
            ("intake API", "POST /api/requests p50 / p99, ms",
             f"{_fmt(_get(api, 'intake', 'latency', 'p50_ms'), 1)} / {_fmt(_get(api, 'intake', 'latency', 'p99_ms'), 1)}",
             f"p50 {_x(api.get('ratio_p50_latency'))}"),
        ]
    fp = scenarios.get("footprint", {})
    if "error" not in fp and fp:
        rows.append(("footprint", "start to all services healthy, s", _fmt(fp.get("startup_s"), 2),
                     f"{_x(fp.get('startup_ratio_to_bare'))} bare"))
        for service, rss in fp.get("rss_mb", {}).items():
            rows.append(("footprint", f"{service} RSS idle / after load, MB",
                         f"{_fmt(rss['idle'], 0)} / {_fmt(rss['after_load'], 0)}",
                         f"{_x(rss.get('after_load_ratio_to_bare'))} bare"))
        if idle_cpu := fp.get("idle_cpu_ms_per_s"):
            rows.append(("footprint", "idle CPU, ms per s: i / h / r / n",
                         " / ".join(_fmt(v, 1) for v in idle_cpu.values()),
                         f"total {_fmt(sum(idle_cpu.values()), 1)}"))
    d = scenarios.get("backlog_drain", {})
    if "error" not in d and d:
        rows.append(("backlog drain", f"{d['service']}: {d['events']:,} events, s from restart",
                     _fmt(d.get("drain_s"), 1), ""))
        rows.append(("backlog drain", f"{d['service']}: catch-up events/s", _fmt(d.get("per_s"), 0),
                     _x(d.get("ratio_to_baseline"))))
    for name, value in scenarios.items():
        if isinstance(value, dict) and "error" in value:
            rows.append((name, "FAILED", value["error"][:80], ""))
    return rows


def print_report(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    meta = result["meta"]
    table = Table(title=f"refuge benchmark ({'quick' if meta['quick'] else 'full'} run, store {meta['store']}, "
                        f"{meta['cpus']} cpus, load {meta['load_before'][0]:.1f} -> {meta['load_after'][0]:.1f})")
    for column in ("scenario", "figure", "value", "ratio"):
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for row in table_rows(result["scenarios"]):
        table.add_row(*row)
    console.print(table)
    goals = Table(title="targets of issue 9 (not pass/fail)")
    for column in ("figure", "target", "value", "met"):
        goals.add_column(column)
    for t in result["targets"]:
        goals.add_row(t["figure"], t["target"], _fmt(t["value"], 2), _fmt(t["met"]))
    console.print(goals)


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))


def _ecdf(ax, seconds: list[float], label: str) -> None:
    if not seconds:
        return
    ms = np.sort(np.asarray(seconds) * 1000)
    ax.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=label)


def write_plot(result: dict, samples: dict, path: Path) -> None:
    scenarios = result["scenarios"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(f"refuge benchmark, {result['meta']['started_at']} "
                 f"({'quick' if result['meta']['quick'] else 'full'}, {result['meta']['store']})")

    ax = axes[0][0]
    for rate, s in samples.get("end_to_end", {}).items():
        _ecdf(ax, s["latencies"], f"{rate} req/s")
    _ecdf(ax, samples.get("baseline_hops", []), "baseline hop")
    ax.axvline(25, color="grey", linestyle=":", label="target p99 at 100/s")
    ax.set(title="end-to-end latency: request to mail", xlabel="ms (log)", ylabel="fraction", xscale="log")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    for name, s in samples.get("intake_api", {}).items():
        _ecdf(ax, s, name)
    ax.set(title="intake API latency at concurrency 32", xlabel="ms (log)", ylabel="fraction", xscale="log")
    ax.legend(fontsize=8)

    ax = axes[0][2]
    for rate, s in samples.get("end_to_end", {}).items():
        if s["backlog"]:
            t, n = zip(*s["backlog"], strict=True)
            ax.plot(t, n, label=f"{rate} req/s")
    ax.set(title="requests not yet mailed (end-to-end)", xlabel="s into the rate", ylabel="requests")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    names, values = [], []
    if (v := _get(scenarios, "baseline", "consume_per_s")) is not None:
        names.append("baseline\nredis-py"), values.append(v)
    for service in HANDLER_SERVICES:
        if (v := _get(scenarios, "handler_throughput", service, "per_s")) is not None:
            names.append(service), values.append(v)
    if (v := _get(scenarios, "backlog_drain", "per_s")) is not None:
        names.append("notify\ndrain"), values.append(v)
    ax.bar(names, values, color=["grey"] + ["C0"] * (len(names) - 1))
    ax.axhline(5000, color="red", linestyle=":", label="target 5,000/s")
    ax.set(title="throughput, events/s", ylabel="events/s (log)", yscale="log")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    bare, intake = _get(scenarios, "intake_api", "bare", "requests_per_s"), _get(scenarios, "intake_api", "intake", "requests_per_s")
    ax.bar(["bare validating\nendpoint", "intake\nPOST /api/requests"], [bare or 0, intake or 0], color=["grey", "C0"])
    if bare:
        ax.axhline(0.4 * bare, color="red", linestyle=":", label="target 0.4 x bare")
        ax.legend(fontsize=8)
    ax.set(title="intake API, requests/s", ylabel="requests/s")

    ax = axes[1][2]
    rss = _get(scenarios, "footprint", "rss_mb", default={}) or {}
    x = np.arange(len(rss))
    ax.bar(x - 0.2, [r["idle"] for r in rss.values()], 0.4, label="idle")
    ax.bar(x + 0.2, [r["after_load"] for r in rss.values()], 0.4, label="after load")
    ax.axhline(120, color="red", linestyle=":", label="target 120 MB")
    ax.set_xticks(x, list(rss))
    startup = _get(scenarios, "footprint", "startup_s")
    ax.set(title=f"resident memory (start to healthy: {_fmt(startup, 2)} s)", ylabel="MB")
    ax.legend(fontsize=8)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
