"""Fault-injection suite: drive the real services under faults, then prove nothing was lost or done twice.

`python -m chaos --seed 7 --ops 2000` starts its own Redis (AOF) behind a TCP proxy, an SMTP sink
and the four services as processes; runs a workload while it kills, stops and cuts things; lets
the system drain; and compares every expected effect with what each store and the mailbox hold.
"""

from .config import ChaosConfig
from .run import run_chaos

__all__ = ["ChaosConfig", "run_chaos"]
