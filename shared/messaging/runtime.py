"""Everything a service needs to take part in the event flow, built in one place per process."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.redis import RedisBroker
from sqlalchemy import Table, text

from shared.auth import TokenSigner, staff_dependency
from shared.migrations import has_migrations, upgrade
from shared.observability import (
    GROUP_LAG,
    GROUP_PENDING,
    OUTBOX_BACKLOG,
    TracedRequests,
    configure_tracing,
    flush_traces,
    render,
)
from shared.settings import ServiceSettings
from shared.store import WalCheckpoints, create_tables, is_sqlite, make_engine, session_factory, sqlite_path

from .consumer import EventConsumer, Handler
from .relay import OutboxRelay
from .tables import MESSAGING_TABLES
from .uow import UnitOfWorkFactory

log = structlog.get_logger("runtime")


class ServiceRuntime:
    def __init__(self, settings: ServiceSettings, *, tables: list[Table], handlers: dict[str, Handler]):
        self.settings = settings
        self.tables = [*MESSAGING_TABLES, *tables]
        store_file = sqlite_path(settings.database_url)
        self.checkpoints = WalCheckpoints(store_file) if store_file else None
        self.engine = make_engine(settings.database_url, checkpoints_elsewhere=self.checkpoints is not None)
        self.sessions = session_factory(self.engine)
        self.broker = RedisBroker(
            settings.redis_url,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=15,
            logger=logging.getLogger("faststream"),
            log_level=logging.DEBUG,  # per-message logs stay off the hot path
            graceful_timeout=10,
        )
        self.relay = OutboxRelay(settings.service_name, self.broker, self.sessions, poll_seconds=settings.outbox_poll_seconds,
                                 lock_rows=not is_sqlite(settings.database_url))
        self.uow = UnitOfWorkFactory(self.sessions, settings.namespace, self.relay.committed, settings.service_name)
        self.consumer = EventConsumer(
                self.broker,
                service=settings.service_name,
                namespace=settings.namespace,
                consumer=settings.consumer(),
                handlers=handlers,
                uow=self.uow,
                batch_size=settings.batch_size,
                poll_interval_ms=settings.poll_interval_ms,
                reclaim_idle_ms=settings.reclaim_idle_ms,
                max_deliveries=settings.max_deliveries,
        )
        self.signer = TokenSigner(settings.auth_secret.get_secret_value(), settings.token_max_age_seconds)
        self.current_staff = staff_dependency(self.signer)
        self._tasks: list[asyncio.Task] = []
        self.startup: list = []  # coroutine functions run once the tables exist (seeding)
        self.background: list = []  # long-running coroutine functions a service adds (clocks, senders)
        self.metric_hooks: list = []  # async callables refreshing domain gauges when /metrics is scraped
        configure_tracing(settings.service_name, settings.otlp_endpoint, settings.otlp_timeout_seconds)

    async def start(self) -> None:
        if self.settings.create_tables:
            # A service's store is created and upgraded by its migrations; bare tables only for
            # runtimes without any (ad-hoc consumers in tests).
            if has_migrations(self.settings.service_name):
                await upgrade(self.engine, self.settings.service_name)
            else:
                await create_tables(self.engine, self.tables)
        for hook in self.startup:
            await hook()
        await self._connect_with_retry()
        if self.consumer:
            await self.consumer.ensure_groups()
        await self.broker.start()
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.checkpoints:
            self._tasks.append(asyncio.create_task(self.checkpoints.run(), name="wal-checkpoints"))
        if self.consumer:
            self._tasks.append(asyncio.create_task(self.consumer.watch(), name="consumer-watchdog"))
        for factory in self.background:
            self._tasks.append(asyncio.create_task(factory(), name=getattr(factory, "__name__", "background")))
        self.relay.wake()

    async def _connect_with_retry(self, attempts: int = 30) -> None:
        for attempt in range(attempts):
            try:
                client = await self.broker.connect()
                await asyncio.wait_for(client.ping(), timeout=3)
                return
            except Exception:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(1)

    async def stop(self, step_timeout: float = 10.0) -> None:
        """Each step is bounded: a task that does not end when cancelled, or a broker or store that
        does not answer, is logged and left behind rather than holding up the service's exit."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            done, stuck = await asyncio.wait(self._tasks, timeout=step_timeout)
            for task in done:  # collected, so that one that had failed is not reported again at exit
                if not task.cancelled():
                    task.exception()
            for task in stuck:
                log.warning("runtime.task_did_not_stop", task=task.get_name())
        self._tasks.clear()
        for step, call in (("broker", self.broker.stop), ("store", self.engine.dispose)):
            try:
                await asyncio.wait_for(call(), timeout=step_timeout)
            except TimeoutError:
                log.warning("runtime.stop_timed_out", step=step)
            except Exception as exc:
                log.warning("runtime.stop_failed", step=step, error=type(exc).__name__)
        await asyncio.to_thread(flush_traces)

    async def health(self) -> dict:
        checks: dict[str, bool] = {}
        try:
            client = await self.broker.connect()
            checks["broker"] = bool(await asyncio.wait_for(client.ping(), timeout=2))
        except Exception:
            checks["broker"] = False
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
            checks["store"] = True
        except Exception:
            checks["store"] = False
        checks["subscribers"] = self.consumer.running() if self.consumer else True
        checks["background"] = all(not t.done() for t in self._tasks)
        return {"status": "ok" if all(checks.values()) else "failing", "checks": checks}

    def lifespan(self):
        @asynccontextmanager
        async def lifespan(_app: FastAPI):
            try:
                await self.start()
            except BaseException:
                # Subscribers already started would go on handling events while the server exits,
                # and one still holding the store could keep the process from ever ending.
                await self.stop()
                raise
            try:
                yield
            finally:
                await self.stop()

        return lifespan

    async def refresh_metrics(self) -> None:
        service = self.settings.service_name
        try:
            OUTBOX_BACKLOG.labels(service).set(await self.relay.backlog())
        except Exception:
            pass
        try:
            client = await self.broker.connect()
            for stream in self.consumer.streams:
                for group in await asyncio.wait_for(client.xinfo_groups(stream), timeout=2):
                    name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
                    if name != self.consumer.group:
                        continue
                    GROUP_PENDING.labels(service, stream).set(group["pending"])
                    if group.get("lag") is not None:
                        GROUP_LAG.labels(service, stream).set(group["lag"])
        except Exception:
            pass
        for hook in self.metric_hooks:
            try:
                await hook()
            except Exception:
                pass

    def mount_observability(self, app: FastAPI) -> None:
        app.add_middleware(TracedRequests, service=self.settings.service_name)

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            await self.refresh_metrics()
            return Response(render(), media_type="text/plain; version=0.0.4")

    def mount_health(self, app: FastAPI) -> None:
        self.mount_observability(app)

        @app.get("/health", tags=["operations"], include_in_schema=False)
        async def health() -> JSONResponse:
            report = await self.health()
            return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

        @app.get("/health/stats", tags=["operations"], include_in_schema=False)
        async def stats() -> dict:
            return {
                "consumer": dict(self.consumer.stats) if self.consumer else {},
                "outbox_published": self.relay.published_total,
                "outbox_backlog": await self.relay.backlog(),
            }
