"""`python -m chaos --seed 7 --ops 2000`: one chaos run; prints the counts; exits 1 unless clean."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import ChaosConfig
from .run import run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", type=int, default=2000, help="operations the workload sends")
    parser.add_argument("--duration", type=float, help="seconds the workload should last (sets the rate to ops / duration)")
    parser.add_argument("--rate", type=float, help="operations per second (default 40)")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--max-backlog", type=int, help="entries the services may fall behind before the workload waits")
    parser.add_argument("--kills", type=int, dest="kills_per_service", help="SIGKILLs of each service")
    parser.add_argument("--stops", type=int, dest="stops_per_service", help="SIGSTOPs of each service")
    parser.add_argument("--redis-restarts", type=int)
    parser.add_argument("--cuts", type=int, dest="network_cuts")
    parser.add_argument("--delays", type=int, dest="network_delays")
    parser.add_argument("--poison", type=int, dest="poison_events")
    parser.add_argument("--point-kills", type=int, dest="point_kills_per_service",
                        help="of each service's kills, how many arm the restarted process with a fault point")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default=os.environ.get("CHAOS_STORE", "sqlite"))
    parser.add_argument("--postgres-url", default=os.environ.get("REFUGE_TEST_POSTGRES_URL"))
    parser.add_argument("--workdir", type=Path, help="keep logs, stores and Redis data here")
    parser.add_argument("--log-level", help="services' log level (default WARNING)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in vars(args).items() if k not in ("duration", "json", "ops")}
    if args.duration and not args.rate:
        overrides["rate"] = args.ops / args.duration
    config = ChaosConfig.scaled(args.ops, **overrides)
    report = run_chaos(config, say=lambda line: print(line, flush=True))
    print(report.format())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    if report.problems():
        print(f"logs and stores kept in {report.workdir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
