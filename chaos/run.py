"""One chaos run: start everything, drive the workload under faults, drain, observe, check."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from shared.testing.proxy import TcpProxy
from shared.testing.redis_server import RedisServer, free_port
from shared.testing.smtp_sink import SmtpSink
from shared.testing.stack import Stack

from .checker import Report, check_dead_letters, compare, expected_effects, resolve_unknown
from .config import ChaosConfig
from .deliveries import EventInjector, direct_client
from .injector import Cluster, FaultRunner, Instance, plan_faults
from .observe import (
    Observation,
    dead_letters,
    deliveries_due,
    group_backlog,
    healthy,
    observe_mailbox,
    observe_stores,
    outbox_backlogs,
    stream_lengths,
)
from .workload import Workload


def run_chaos(config: ChaosConfig, say: Callable[[str], None] = print) -> Report:
    return asyncio.run(_run(config, say))


async def _run(config: ChaosConfig, say: Callable[[str], None]) -> Report:
    workdir = Path(config.workdir or tempfile.mkdtemp(prefix=f"chaos-{config.seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    namespace = f"chaos{config.seed}x{uuid.uuid4().hex[:6]}"
    reports: list[Report] = []

    def remove_workdir_if_clean() -> None:
        if reports and not reports[0].problems() and not config.keep_workdir and config.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    async with AsyncExitStack() as cleanup:
        cleanup.callback(remove_workdir_if_clean)  # the first pushed runs last: after every stop
        reports.append(await _run_in(config, say, workdir, namespace, cleanup))
        return reports[0]


async def _run_in(config: ChaosConfig, say: Callable[[str], None], workdir: Path, namespace: str,
                  cleanup: AsyncExitStack) -> Report:
    """Everything started here is stopped by `cleanup`, in reverse order, whatever happens."""
    redis = RedisServer(workdir / "redis")
    cleanup.callback(redis.stop)
    redis.start()
    proxy = TcpProxy(redis.port).start()
    cleanup.callback(proxy.stop)
    sink = SmtpSink(free_port()).start()
    cleanup.callback(sink.stop)
    databases = await _databases(config, workdir)
    cleanup.push_async_callback(_drop_databases, config, databases)
    stack = Stack(workdir=workdir, redis_url=proxy.url, namespace=namespace, smtp_port=sink.port,
                  database_urls=databases, extra_env=_service_env(config))
    instances = [Instance(name, name, stack.add(name)) for name in config.services]
    cluster = Cluster(config, redis, proxy, instances)
    cleanup.callback(stack.stop)
    cleanup.callback(cluster.stop_supervising)
    direct = direct_client(redis.url)
    cleanup.push_async_callback(direct.aclose)
    events = EventInjector(redis.url, namespace, random.Random(config.seed * 31), max_deliveries=config.max_deliveries,
                           bad_kinds=config.bad_kinds)
    cleanup.push_async_callback(events.close)
    for inst in instances:
        cluster.launch(inst)
    await asyncio.gather(*(asyncio.to_thread(i.process.wait_healthy, 60) for i in instances))
    urls = {i.service: i.process.url for i in instances}
    say(f"chaos: stack up in {workdir} (namespace {namespace}); {config.ops} operations at "
        f"{config.rate:.0f}/s with faults")

    supervisor = asyncio.create_task(cluster.supervise())
    behind = Backpressure(direct, namespace, config.max_backlog)
    watcher = asyncio.create_task(behind.watch())
    workload = Workload(seed=config.seed, ops=config.ops, rate=config.rate, concurrency=config.concurrency,
                        urls=urls, http_timeout=config.http_timeout, hold=behind.hold)
    runner = FaultRunner(cluster, events, plan_faults(config, instances))
    started = time.monotonic()
    ledger_task = asyncio.create_task(workload.run())
    await runner.run(lambda: len(workload.ledger.operations) / config.ops)
    await cluster.heal()
    faults_ended = time.monotonic()
    ledger = await ledger_task
    watcher.cancel()
    drain_from = time.monotonic()
    say(f"chaos: faults over after {faults_ended - started:.0f}s, workload done after "
        f"{workload.finished - workload.started:.0f}s; draining")

    converged_at, backlog, settled = await _converge(config, direct, namespace, urls, databases, drain_from)
    cluster.stop_supervising()
    await supervisor

    obs = Observation()
    obs.pending = backlog
    await observe_stores(databases, obs)
    with sink.mailbox.lock:
        messages = list(sink.mailbox.messages)
    observe_mailbox(messages, obs)
    obs.dead_letters = await dead_letters(direct, namespace)

    resolve_unknown(ledger, obs)
    log = cluster.log
    report = Report(
        seed=config.seed, ops=config.ops,
        workload_seconds=workload.finished - workload.started,
        operations=ledger.counts(), operations_by_kind=ledger.by_kind(),
        faults={"kills_by_service": log.kills_by_service(), "kills_sent": dict(log.kills),
                "fault_point_kills": dict(log.fault_point_kills), "armed": dict(log.armed), "stops": dict(log.stops),
                "crashes": dict(log.crashes), "restarts": dict(log.restarts),
                "redis_restarts": log.redis_restarts, "network_cuts": log.network_cuts,
                "network_delays": log.network_delays, "duplicate_bursts": log.duplicate_bursts,
                "reorder_bursts": log.reorder_bursts, "bad_rounds": log.bad_rounds, "poison": log.poison},
        injected=events.log.counts(), fault_errors=log.errors, converge_limit=config.converge_limit,
        workdir=str(workdir),
    )
    compare(expected_effects(ledger), obs, ledger, report)
    report.not_accepted = dict(Counter(f"{op.kind}:{op.detail}" for op in ledger.operations
                                       if op.status in ("refused", "unknown")).most_common(8))
    check_dead_letters(events.log, obs, report, config.max_deliveries)
    report.mails_received, report.mail_resends = obs.mails_received, obs.mail_resends
    report.deliveries_not_sent, report.mails_missing = obs.deliveries_not_sent, obs.mails_missing
    report.pending_by_group = {k: v for k, v in backlog.items() if v}
    report.pending_never_processed = sum(backlog.values())
    report.converged = converged_at is not None
    report.converge_seconds = None if converged_at is None else converged_at - drain_from
    report.faults_seconds = faults_ended - started
    report.held_back_seconds = round(behind.held_seconds, 1)
    report.converge_after_faults = None if converged_at is None else converged_at - faults_ended
    report.settled_after = {k: round(v - drain_from, 1) for k, v in settled.items()}
    return report


class Backpressure:
    """Whether the services are more than `limit` entries behind (pending + unread, all groups)."""

    def __init__(self, client: aioredis.Redis, namespace: str, limit: int):
        self.client, self.namespace, self.limit = client, namespace, limit
        self.behind = 0
        self.held_seconds = 0.0

    def hold(self) -> bool:
        return self.behind > self.limit

    async def watch(self, every: float = 0.5) -> None:
        while True:
            try:
                self.behind = sum((await group_backlog(self.client, self.namespace)).values())
            except Exception:
                pass  # Redis is restarting: keep the last reading
            await asyncio.sleep(every)
            if self.hold():
                self.held_seconds += every


def _service_env(config: ChaosConfig) -> dict[str, str]:
    # notify: a mail claimed by a process that was then killed is sent again after the lease, so
    # the lease is short here, like the reclaim idle time, or the drain would wait two minutes.
    env = {"NOTIFY_RETRY_BASE_SECONDS": "0.2", "NOTIFY_SENDER_POLL_SECONDS": "0.5",
           "NOTIFY_SEND_LEASE_SECONDS": "5", "NOTIFY_SMTP_TIMEOUT": "3"}
    for service in config.services:
        prefix = service.upper() + "_"
        env.update({prefix + "RECLAIM_IDLE_MS": str(config.reclaim_idle_ms),
                    prefix + "MAX_DELIVERIES": str(config.max_deliveries),
                    prefix + "LOG_LEVEL": config.log_level})
    return env


def _sqlite_urls(workdir: Path, config: ChaosConfig) -> dict[str, str]:
    return {s: f"sqlite+aiosqlite:///{workdir / (s + '.db')}" for s in config.services}


async def _databases(config: ChaosConfig, workdir: Path) -> dict[str, str]:
    if config.store == "sqlite":
        return _sqlite_urls(workdir, config)
    if not config.postgres_url:
        raise ValueError("store=postgres needs a PostgreSQL admin URL (--postgres-url)")
    import asyncpg

    admin = config.postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    base = admin.rsplit("/", 1)[0]
    urls = {}
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        for service in config.services:
            name = f"chaos_{service}_{uuid.uuid4().hex[:8]}"
            await conn.execute(f'CREATE DATABASE "{name}"')
            urls[service] = f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://")
    finally:
        await conn.close()
    return urls


async def _drop_databases(config: ChaosConfig, databases: dict[str, str]) -> None:
    if config.store != "postgres" or not databases:
        return
    import asyncpg

    conn = await asyncpg.connect(config.postgres_url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        for url in databases.values():
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def _converge(config: ChaosConfig, client: aioredis.Redis, namespace: str, urls: dict[str, str],
                    databases: dict[str, str], since: float) -> tuple[float | None, dict[str, int], dict[str, float]]:
    """Wait until every service is healthy, every outbox empty, every group read and acknowledged
    everything and notify has no mail left to send, twice in a row with nothing written in between.
    Also says when each of these last became true, to show what a slow drain waited for."""
    deadline = since + config.converge_timeout
    first_quiet: float | None = None
    quiet_lengths = None
    backlog: dict[str, int] = {}
    settled = {name: since for name in ("healthy", "outboxes", "groups", "mails")}
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            checked_at = time.monotonic()
            state = dict.fromkeys(settled, False)
            try:
                lengths = await stream_lengths(client, namespace)
                state["healthy"] = await healthy(http, urls)
                state["outboxes"] = all(v == 0 for v in (await outbox_backlogs(http, urls)).values())
                state["mails"] = await deliveries_due(databases["notify"]) == 0
                backlog = await group_backlog(client, namespace)
                state["groups"] = not any(backlog.values())
                quiet = all(state.values()) and lengths == await stream_lengths(client, namespace)
            except Exception:
                quiet = False
            for name, ok in state.items():
                if not ok:
                    settled[name] = time.monotonic()
            if quiet and first_quiet is not None and lengths == quiet_lengths:
                return first_quiet, backlog, settled
            first_quiet, quiet_lengths = (checked_at, lengths) if quiet else (None, None)
            await asyncio.sleep(0.5)
    try:
        backlog = await group_backlog(client, namespace)
    except Exception:
        pass
    return None, backlog, settled
