"""What a chaos run does: how much work, which faults, how many of each, and the limits it is held to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("intake", "housing", "referrals", "notify")


@dataclass
class ChaosConfig:
    seed: int = 1
    ops: int = 2000
    # Operations per second the workload aims at (a slower machine simply takes longer).
    rate: float = 40.0
    concurrency: int = 6
    max_backlog: int = 200  # the workload waits while the services are more entries behind than this
    http_timeout: float = 8.0  # a request still unanswered after this is "unknown", not "refused"

    # Faults, each due at a random point of the workload's progress and ending by itself.
    kills_per_service: int = 5
    stops_per_service: int = 1  # SIGSTOP longer than the reclaim idle time, then SIGCONT
    redis_restarts: int = 2
    network_cuts: int = 2
    network_delays: int = 2
    duplicate_bursts: int = 4  # copies of real entries re-published (some several times)
    reorder_bursts: int = 3  # real entries re-published newest first, old ones long after
    bad_entry_rounds: int = 1  # one entry of each bad kind on every stream
    bad_kinds: tuple[str, ...] = ("garbage", "not_json", "not_an_envelope", "invalid_payload", "unknown_type")
    poison_events: int = 2
    # Of each service's kills, this many restart the process armed with a messaging fault point
    # (REFUGE_FAULTS), so that it then kills itself at one of its next commits exactly there:
    # between commit and publish, between publish and marking published, between commit and ack.
    point_kills_per_service: int = 2
    armed_grace: float = 10.0  # seconds an armed process gets to reach its point before the next kill
    armed_chance: float = 1.0  # chance per commit that an armed process dies at its point: at its first
    handler_raise_share: float = 0.3  # share of restarted processes whose handlers raise now and then
    handler_raise_chance: float = 0.02  # per event; a real event would need max_deliveries in a row

    # Messaging settings handed to every service.
    reclaim_idle_ms: int = 1500
    max_deliveries: int = 5  # the services' default; a real event never fails this often in a row here

    converge_limit: float = 60.0  # seconds; the run fails past this
    converge_timeout: float = 120.0  # how long we keep waiting to measure a slow convergence
    log_level: str = "WARNING"  # of the services; per-event INFO lines cost CPU the run needs
    store: str = "sqlite"  # or "postgres" (needs postgres_url)
    postgres_url: str | None = None
    workdir: Path | None = None
    keep_workdir: bool = False
    services: tuple[str, ...] = field(default=SERVICES)

    @classmethod
    def scaled(cls, ops: int, **overrides) -> ChaosConfig:
        """Defaults for `ops` operations: fault counts grow with the run, never below the short run's."""
        factor = max(1, ops // 2000)
        values = dict(
            ops=ops,
            kills_per_service=5 * factor,
            point_kills_per_service=2 * factor,
            stops_per_service=1 * factor,
            redis_restarts=2 * factor,
            network_cuts=2 * factor,
            network_delays=2 * factor,
            duplicate_bursts=4 * factor,
            reorder_bursts=3 * factor,
            bad_entry_rounds=1 * factor,
            poison_events=2 * factor,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
