"""How big each scenario is: the full run of issue 9, and a quick run that only shows it works."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Sizes:
    baseline_events: int  # produced and consumed by plain redis-py into the store
    hop_samples: int  # single events timed through one plain hop (XADD, XREADGROUP, commit, XACK)
    handler_events: int  # backlog drained by each service's real handler
    handler_timeout: float  # a slower service is reported with the rate it reached by then
    e2e_rates: tuple[int, ...]  # requests per second posted to intake
    e2e_seconds: float  # how long each rate is held
    e2e_settle_seconds: float  # how long to wait, after a rate, for the last mails
    api_concurrency: int
    api_seconds: float  # measured window of the intake API scenario, per endpoint
    api_warmup_seconds: float
    startup_runs: int  # cold starts of the four services (the end-to-end stack's start is the last)
    idle_seconds: float  # the last stack left alone after its start: its CPU while idle
    drain_events: int  # queued while a service is stopped
    drain_timeout: float  # likewise for the backlog drain

    def as_dict(self) -> dict:
        return asdict(self)


FULL = Sizes(
    baseline_events=20_000, hop_samples=500, handler_events=20_000, handler_timeout=300.0,
    e2e_rates=(20, 100, 300), e2e_seconds=30.0, e2e_settle_seconds=90.0,
    api_concurrency=32, api_seconds=15.0, api_warmup_seconds=2.0,
    startup_runs=3, idle_seconds=10.0, drain_events=100_000, drain_timeout=600.0,
)

QUICK = Sizes(
    baseline_events=2_000, hop_samples=100, handler_events=500, handler_timeout=120.0,
    e2e_rates=(20, 100, 300), e2e_seconds=1.0, e2e_settle_seconds=20.0,
    api_concurrency=32, api_seconds=2.0, api_warmup_seconds=1.0,
    startup_runs=1, idle_seconds=2.0, drain_events=500, drain_timeout=120.0,
)
