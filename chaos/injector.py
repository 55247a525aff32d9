"""Faults during the workload, each due at a random point of its progress and ending by itself.

A fault is due when the workload has done a given share of its operations, not at a given
second: on a slow or loaded machine the faults stretch with the workload, and they stop when
it ends.

* SIGKILL of each service process at random moments; some kills restart the process armed with a
  messaging fault point (REFUGE_FAULTS), so that it then dies exactly between commit and publish,
  between publish and marking published, between commit and ack (or, for notify, between handing
  a mail over and recording it); some restarted processes have handlers that raise now and then;
* SIGSTOP longer than the reclaim idle time, then SIGCONT;
* restarts of the suite's own Redis (AOF, graceful stop, same port);
* network cuts and delays between the services and Redis, in the suite's own TCP proxy;
* copies of real events (duplicates, newest first, stale), bad entries on every stream, poison.

A supervisor restarts any process that died (killed by us, by a fault point, or crashed), so the
system always comes back; once the faults are over every process still carrying a fault point is
restarted clean.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from shared.testing.proxy import TcpProxy
from shared.testing.redis_server import RedisServer
from shared.testing.stack import ServiceProcess

from .config import ChaosConfig
from .deliveries import POISON_MARKER, EventInjector

log = structlog.get_logger("chaos")

# Messaging fault points a restarted process may carry (see shared/messaging/faults.py).
KILL_POINTS = ("after_commit", "after_outbox_commit", "after_publish")
NOTIFY_POINTS = ("after_send",)


@dataclass
class Instance:
    """One service process slot: the service it runs and its restarts."""

    service: str
    key: str
    process: ServiceProcess
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    incarnation: int = 0
    fault_point: str = ""  # the point this incarnation may kill itself at, if any
    armed: str = ""  # the point the next incarnation will carry
    killing: bool = False  # we are killing it: its death is ours, not a fault point's


@dataclass
class FaultLog:
    kills: Counter = field(default_factory=Counter)  # service -> SIGKILLs we sent
    fault_point_kills: Counter = field(default_factory=Counter)  # "service:point" -> processes that killed themselves there
    armed: Counter = field(default_factory=Counter)  # "service:point" -> processes started armed with that point
    crashes: Counter = field(default_factory=Counter)  # service -> exits we did not cause (other than fault points)
    stops: Counter = field(default_factory=Counter)
    restarts: Counter = field(default_factory=Counter)
    redis_restarts: int = 0
    network_cuts: int = 0
    network_delays: int = 0
    poison: int = 0
    bad_rounds: int = 0
    duplicate_bursts: int = 0
    reorder_bursts: int = 0
    errors: list[str] = field(default_factory=list)  # a fault that could not be carried out, and why

    def kills_by_service(self) -> dict[str, int]:
        total = Counter(self.kills)
        for key, n in self.fault_point_kills.items():
            total[key.split(":")[0]] += n
        return dict(total)


class Cluster:
    """The suite's Redis, the proxy in front of it and the service processes, with a supervisor."""

    def __init__(self, config: ChaosConfig, redis: RedisServer, proxy: TcpProxy, instances: list[Instance]):
        self.config = config
        self.redis = redis
        self.proxy = proxy
        self.instances = instances
        self.redis_lock = asyncio.Lock()  # injections never overlap a Redis restart
        self.faults_on = False
        self.rng = random.Random(config.seed * 7919)
        self.log = FaultLog()
        self._supervising = True

    def _fault_spec(self, inst: Instance) -> str:
        spec = [f"poison={POISON_MARKER}"]  # poison is always on: its entries stay until dead-lettered
        inst.fault_point, inst.armed = inst.armed, ""
        if not self.faults_on:
            inst.fault_point = ""
        elif inst.fault_point:
            spec.append(f"{inst.fault_point}=kill@{self.config.armed_chance}")
            self.log.armed[f"{inst.service}:{inst.fault_point}"] += 1
        elif self.rng.random() < self.config.handler_raise_share:
            spec.append(f"handler=raise@{self.config.handler_raise_chance}")
        return ",".join(spec)

    def launch(self, inst: Instance) -> None:
        """Start a new process in this slot, with a fresh or the stable consumer name."""
        inst.incarnation += 1
        prefix = inst.service.upper() + "_"
        env = inst.process.env
        env["REFUGE_FAULTS"] = self._fault_spec(inst)
        # A fresh name leaves the dead process's pending entries to be taken over by another
        # consumer; the stable name has the same consumer find them again.
        fresh = self.rng.random() < 0.5
        env[prefix + "CONSUMER_NAME"] = f"{inst.key}-{inst.incarnation}" if fresh else f"{inst.key}-chaos"
        inst.process.start()
        inst.killing = False

    async def supervise(self) -> None:
        while self._supervising:
            for inst in self.instances:
                proc = inst.process.process
                if proc is None or proc.poll() is None or inst.lock.locked():
                    continue
                async with inst.lock:
                    self._note_exit(inst)
                    self.log.restarts[inst.service] += 1
                    self.launch(inst)
            await asyncio.sleep(0.2)

    def _note_exit(self, inst: Instance) -> None:
        code = inst.process.process.returncode
        if inst.killing:
            return  # counted where we killed it
        if code == -signal.SIGKILL and inst.fault_point:
            self.log.fault_point_kills[f"{inst.service}:{inst.fault_point}"] += 1
        else:
            self.log.crashes[inst.service] += 1
            log.warning("chaos.process_exited", service=inst.key, code=code)

    def stop_supervising(self) -> None:
        self._supervising = False

    # --- faults ----------------------------------------------------------------------

    async def kill(self, inst: Instance, downtime: float, arm: str = "") -> None:
        async with inst.lock:
            if inst.fault_point:
                # An armed process: give it the time to reach its fault point before we kill it.
                give_up = time.monotonic() + self.config.armed_grace
                while inst.process.process.poll() is None and time.monotonic() < give_up:
                    await asyncio.sleep(0.1)
            inst.armed = arm
            if inst.process.process.poll() is not None:
                self._note_exit(inst)  # it died on its own a moment ago
            else:
                inst.killing = True
                await asyncio.to_thread(inst.process.kill)
                self.log.kills[inst.service] += 1
            await asyncio.sleep(downtime)
            self.log.restarts[inst.service] += 1
            self.launch(inst)

    async def pause(self, inst: Instance, seconds: float) -> None:
        async with inst.lock:
            inst.process.signal(signal.SIGSTOP)
            self.log.stops[inst.service] += 1
            try:
                await asyncio.sleep(seconds)
            finally:
                inst.process.signal(signal.SIGCONT)

    async def restart_redis(self, downtime: float) -> None:
        async with self.redis_lock:
            await asyncio.to_thread(self.redis.stop)
            try:
                await asyncio.sleep(downtime)
            finally:
                await asyncio.to_thread(self.redis.start)
            self.log.redis_restarts += 1

    async def cut_network(self, seconds: float) -> None:
        self.proxy.cut(seconds)
        self.log.network_cuts += 1
        await asyncio.sleep(seconds)

    async def delay_network(self, latency: float, seconds: float) -> None:
        self.proxy.delay(latency, seconds)
        self.log.network_delays += 1
        await asyncio.sleep(seconds)

    async def heal(self) -> None:
        """Faults are over: no cut, no delay, no stopped process, Redis up, no fault point left."""
        self.faults_on = False
        self.proxy.heal()
        if self.redis.process is None or self.redis.process.poll() is not None:
            await asyncio.to_thread(self.redis.start)
        for inst in self.instances:
            async with inst.lock:
                inst.process.signal(signal.SIGCONT)
                spec = inst.process.env.get("REFUGE_FAULTS", "")
                if spec != f"poison={POISON_MARKER}":
                    inst.killing = True
                    await asyncio.to_thread(inst.process.stop)
                    self.log.restarts[inst.service] += 1
                    self.launch(inst)


@dataclass(order=True)
class PlannedFault:
    at: float
    name: str = field(compare=False)
    target: str = field(compare=False, default="")
    args: tuple = field(compare=False, default=())


def plan_faults(config: ChaosConfig, instances: list[Instance]) -> list[PlannedFault]:
    """The whole schedule, drawn from the seed before anything runs; `at` is a share of the workload done."""
    rng = random.Random(config.seed)
    idle = config.reclaim_idle_ms / 1000
    first, last = 0.02, 0.97

    def when() -> float:
        return rng.uniform(first, last)

    def spread(count: int) -> list[float]:
        """One random point in each of `count` equal slots: a service is not killed again right
        after a kill, and two Redis restarts never fall on the same moment."""
        slot = (last - first) / max(count, 1)
        return [first + slot * n + rng.uniform(0, slot * 0.8) for n in range(count)]

    plan: list[PlannedFault] = []
    for service in config.services:
        keys = [i.key for i in instances if i.service == service]
        points = list(KILL_POINTS + (NOTIFY_POINTS if service == "notify" else ()))
        rng.shuffle(points)
        moments = spread(config.kills_per_service)
        armed = set(rng.sample(range(len(moments)), min(config.point_kills_per_service, len(moments))))
        for n, at in enumerate(moments):
            arm = points[n % len(points)] if n in armed else ""
            plan.append(PlannedFault(at, "kill", rng.choice(keys), (rng.uniform(0.0, 1.0), arm)))
        for _ in range(config.stops_per_service):
            plan.append(PlannedFault(when(), "stop", rng.choice(keys), (idle * rng.uniform(1.5, 2.5),)))
    for at in spread(config.redis_restarts):
        plan.append(PlannedFault(at, "redis_restart", args=(rng.uniform(0.5, 2.0),)))
    for at in spread(config.network_cuts):
        plan.append(PlannedFault(at, "cut", args=(rng.uniform(1.0, 3.0),)))
    for _ in range(config.network_delays):
        plan.append(PlannedFault(when(), "delay", args=(rng.uniform(0.05, 0.3), rng.uniform(2.0, 4.0))))
    for _ in range(config.duplicate_bursts):
        plan.append(PlannedFault(when(), "duplicates"))
    for _ in range(config.reorder_bursts):
        plan.append(PlannedFault(when(), "reorder"))
    for _ in range(config.bad_entry_rounds):
        plan.append(PlannedFault(when(), "bad_entries"))
    for _ in range(config.poison_events):
        plan.append(PlannedFault(when(), "poison"))
    return sorted(plan)


class FaultRunner:
    def __init__(self, cluster: Cluster, events: EventInjector, plan: list[PlannedFault]):
        self.cluster = cluster
        self.events = events
        self.plan = plan
        self.by_key = {i.key: i for i in cluster.instances}

    async def run(self, progress: Callable[[], float]) -> None:
        """Carry out the plan as the workload progresses (0.0 to 1.0); returns once every fault has ended."""
        self.cluster.faults_on = True
        tasks = [asyncio.create_task(self._at(progress, fault)) for fault in self.plan]
        await asyncio.gather(*tasks)

    async def _at(self, progress: Callable[[], float], fault: PlannedFault) -> None:
        while progress() < fault.at:
            await asyncio.sleep(0.1)
        c = self.cluster
        try:
            if fault.name == "kill":
                await c.kill(self.by_key[fault.target], *fault.args)
            elif fault.name == "stop":
                await c.pause(self.by_key[fault.target], *fault.args)
            elif fault.name == "redis_restart":
                await c.restart_redis(*fault.args)
            elif fault.name == "cut":
                await c.cut_network(*fault.args)
            elif fault.name == "delay":
                await c.delay_network(*fault.args)
            else:
                async with c.redis_lock:
                    if fault.name == "duplicates":
                        await self.events.duplicate_burst()
                        c.log.duplicate_bursts += 1
                    elif fault.name == "reorder":
                        await self.events.reorder_burst()
                        c.log.reorder_bursts += 1
                    elif fault.name == "bad_entries":
                        await self.events.bad_round()
                        c.log.bad_rounds += 1
                    elif fault.name == "poison":
                        await self.events.poison()
                        c.log.poison += 1
        except Exception as exc:
            c.log.errors.append(f"{fault.name} {fault.target} at {fault.at:.0%}: {type(exc).__name__}: {exc}")
            log.warning("chaos.fault_failed", fault=fault.name, error=type(exc).__name__)
