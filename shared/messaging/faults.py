"""Fault points for the fault-injection tests; inert unless REFUGE_FAULTS is set.

REFUGE_FAULTS is a comma-separated list of `point=action[@probability]`, e.g.
`handler=hang`, `handler=raise`, `after_commit=kill@0.02`, `poison=P-abc123` (raise for any
event whose payload mentions that reference). Points: `handler` (before a handler runs),
`after_commit` (effects committed, entries not yet acknowledged), `after_outbox_commit`
(a unit of work with events committed, relay not yet woken), `after_publish` (outbox rows
published, not yet marked), `after_send` (notify handed a message over, not yet recorded).
Production never sets it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal


class InjectedFault(Exception):
    pass


def _spec() -> dict[str, str]:
    raw = os.environ.get("REFUGE_FAULTS", "")
    return dict(item.split("=", 1) for item in raw.split(",") if "=" in item)


SPEC = _spec()


async def fault_point(point: str, payload: str = "") -> None:
    if not SPEC:
        return
    if point == "handler" and (marker := SPEC.get("poison")) and marker in payload:
        raise InjectedFault(f"poison marker {marker}")
    action = SPEC.get(point)
    if not action:
        return
    action, _, chance = action.partition("@")
    if chance and random.random() >= float(chance):
        return
    if action == "raise":
        raise InjectedFault(point)
    if action == "hang":
        await asyncio.Event().wait()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
