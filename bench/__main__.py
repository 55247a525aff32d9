"""`python -m bench [--quick] [--out DIR] [--postgres-url URL]`: run every scenario, print a table,
write `DIR/bench-<timestamp>.json` and `.png`. Exits non-zero when a scenario could not run."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import redis
import uvloop
from rich.console import Console

from . import report, scenarios
from .lab import ROOT, Lab
from .sizes import FULL, QUICK

# The baseline always runs: every other figure is also given as a ratio to it.
ONLY_CHOICES = ("intake_api", "handler_throughput", "backlog_drain", "end_to_end")

console = Console()
if not console.is_terminal:  # make's output, a CI log: wide enough for the table not to wrap
    console = Console(width=132)


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit + ("+uncommitted changes" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


async def run(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    lab = Lab(args.out.resolve() / f"bench-{stamp}-work", args.postgres_url)
    started = time.monotonic()
    meta = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "store": lab.store,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "python": platform.python_version(),
        "commit": _git_commit(),
        "sizes": sizes.as_dict(),
    }
    results: dict = {}
    samples: dict = {}

    async def attempt(name: str, scenario):
        console.print(f"[bold]{name}[/bold] …")
        began = time.monotonic()
        try:
            return await scenario
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            return None
        finally:
            console.print(f"  {name} took {time.monotonic() - began:.1f} s (load {os.getloadavg()[0]:.1f})")

    try:
        lab.start()
        meta["redis_version"] = redis.Redis.from_url(lab.redis.url).info("server")["redis_version"]

        if found := await attempt("baseline", scenarios.baseline(lab, sizes)):
            results["baseline"], samples["baseline_hops"] = found
        baseline_per_s = results.get("baseline", {}).get("consume_per_s")
        hop = results.get("baseline", {}).get("hop_latency")

        wanted = set(args.only or ONLY_CHOICES)
        if "intake_api" in wanted and (found := await attempt("intake_api", scenarios.intake_api(lab, sizes))):
            results["intake_api"], samples["intake_api"] = found

        if "handler_throughput" in wanted and (
                found := await attempt("handler_throughput", scenarios.handler_throughput(lab, sizes, baseline_per_s))):
            results["handler_throughput"] = found

        if "backlog_drain" in wanted and (
                found := await attempt("backlog_drain", scenarios.backlog_drain(lab, sizes, baseline_per_s))):
            results["backlog_drain"] = found

        if "end_to_end" in wanted:
            bare = results.get("intake_api", {}).get("bare")
            if found := await attempt("end_to_end", scenarios.whole_stack(lab, sizes, hop, bare)):
                results["end_to_end"], results["footprint"], samples["end_to_end"] = found
            else:
                results["footprint"] = {"error": "measured on the end-to-end stack, which failed"}
    finally:
        await lab.stop()

    meta["load_after"] = os.getloadavg()
    meta["duration_s"] = time.monotonic() - started
    failed = [name for name, value in results.items() if "error" in value]
    order = ("baseline", "handler_throughput", "end_to_end", "intake_api", "footprint", "backlog_drain")
    result = {"meta": meta, "scenarios": {name: results[name] for name in order if name in results}}
    result["targets"] = report.targets(result["scenarios"])
    result["samples_ms"] = {
        "end_to_end": {rate: [round(s * 1000, 3) for s in v["latencies"]] for rate, v in samples.get("end_to_end", {}).items()},
        "intake_api": {name: [round(s * 1000, 3) for s in v] for name, v in samples.get("intake_api", {}).items()},
    }

    json_path = args.out / f"bench-{stamp}.json"
    png_path = args.out / f"bench-{stamp}.png"
    report.write_json(result, json_path)
    report.write_plot(result, samples, png_path)
    report.print_report(result, console)
    console.print(f"figures: {json_path}\nplot:    {png_path}")
    if failed:
        console.print(f"[red]scenarios that could not run: {', '.join(failed)}; logs kept in {lab.workdir}[/red]")
        return 1
    if not args.keep:
        lab.remove_files()
    else:
        console.print(f"work files (stores, logs): {lab.workdir}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark of the refuge stack (issue 9): every scenario, a table, a JSON file and a PNG plot.")
    parser.add_argument("--quick", action="store_true", help="every scenario, much smaller (about a minute)")
    parser.add_argument("--out", type=Path, default=Path("var/bench"), help="directory for the JSON and PNG files")
    parser.add_argument("--postgres-url", default=os.environ.get("REFUGE_BENCH_POSTGRES_URL") or None,
                        help="admin URL of a PostgreSQL server: each service gets fresh databases there "
                             "(default: SQLite files)")
    parser.add_argument("--keep", action="store_true", help="keep the stores and logs of the run")
    parser.add_argument("--only", nargs="+", choices=ONLY_CHOICES, metavar="SCENARIO",
                        help=f"run only these (and the baseline): {', '.join(ONLY_CHOICES)} "
                             "(end_to_end also measures the footprint)")
    args = parser.parse_args()
    sys.exit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
